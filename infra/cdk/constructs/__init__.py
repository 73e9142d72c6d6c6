"""The constructs LoopMLStack combines, each built from `infra.declaration`."""
