"""Captured traffic read back: the gzipped JSON-lines batches Firehose writes, counted into drift tallies.

Each object is decompressed and parsed by Arrow's streaming JSON reader in blocks of a few MB, against a schema
built from the contract, and every block is counted with vectorized kernels: no record becomes a Python object, and
memory depends on the block size, not on the object or the window.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np

from loopml_core import drift
from loopml_core.arrow_arrays import arrow_mask, float_values
from loopml_core.contract import DatasetContract, Task

BLOCK_BYTES = 4 << 20


def capture_schema(contract: DatasetContract, *, features: bool = True) -> Any:
    """The Arrow schema of capture lines for this contract (loopml_core.capture); other fields are ignored, and so
    are the features when `features` is false (joining labels needs only ids, versions and predictions)."""
    import pyarrow as pa

    classification = contract.task is Task.CLASSIFICATION
    fields = [
        ("model", pa.string()),
        ("version", pa.int64()),
        ("request_id", pa.string()),
        ("at", pa.string()),
        ("first", pa.int64()),
        ("prediction", pa.list_(pa.string() if classification else pa.float64())),
        ("shadow", pa.bool_()),  # a challenger's scoring of traffic the champion answered; absent (null) otherwise
    ]
    if features:
        columns = [(f.name, pa.list_(pa.float64() if f.is_numeric else pa.string())) for f in contract.features]
        fields.append(("features", pa.struct(columns)))
    if classification:
        fields += [("classes", pa.list_(pa.string())), ("probabilities", pa.list_(pa.list_(pa.float64())))]
    return pa.schema(fields)


def capture_batches(contract: DatasetContract, stream: BinaryIO, *, features: bool = True) -> Iterator[Any]:
    """Record batches of a gzipped capture object, read as it streams in."""
    import pyarrow as pa
    import pyarrow.json as pj

    source = pa.CompressedInputStream(pa.PythonFile(stream, mode="r"), "gzip")
    schema = capture_schema(contract, features=features)
    reader = pj.open_json(
        source,
        read_options=pj.ReadOptions(block_size=BLOCK_BYTES, use_threads=True),
        parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"),
    )
    yield from reader


@dataclass
class Counted:
    """What reading a window's objects found, beside the tallies."""

    objects: int = 0
    lines: int = 0
    rows: int = 0  # predictions of the version being checked
    other_versions: dict[int, int] = field(default_factory=dict)  # rows captured from other versions
    unreadable: list[str] = field(default_factory=list)  # objects that are not capture lines, with why


def of_model(batch: Any, model: str) -> np.ndarray:
    """Which lines of a batch are `model`'s: Firehose partitions by model, but a record is trusted only so far."""
    import pyarrow.compute as pc

    return np.asarray(pc.equal(batch.column("model"), model).fill_null(False))


def count_batch(
    profile: dict[str, Any], model: str, version: int, batch: Any, window: drift.Window, counted: Counted
) -> None:
    """Count one record batch's predictions of `model` `version` into `window` (features and prediction).

    Features of the profile that the batch's lines do not carry (the contract changed since the champion was
    trained) are left out of the window rather than failing the check.
    """
    import pyarrow.compute as pc

    counted.lines += batch.num_rows
    # Shadow lines scored traffic another version answered: what was served is counted once, from the answering line.
    answered = of_model(batch, model) & ~np.asarray(batch.column("shadow").fill_null(False))
    versions = np.where(answered, np.asarray(batch.column("version").fill_null(-1)), -1)
    mine = versions == version
    lengths = np.asarray(pc.list_value_length(batch.column("prediction")).fill_null(0))
    for other in np.unique(versions[~mine]).tolist():
        counted.other_versions[int(other)] = counted.other_versions.get(int(other), 0) + int(
            lengths[versions == other].sum()
        )
    if not mine.any():
        return
    chosen = batch.filter(arrow_mask(mine)) if not mine.all() else batch
    rows = int(lengths[mine].sum())
    counted.rows += rows
    window.rows += rows
    features = chosen.column("features")
    carried = set(features.type.names)
    for name, entry in profile["features"].items():
        if name in carried:
            window.add(name, tally_column(entry, pc.list_flatten(features.field(name))))
    if profile.get(drift.PREDICTION) is not None:
        predictions = pc.list_flatten(chosen.column("prediction"))
        window.add(drift.PREDICTION, tally_column(profile[drift.PREDICTION], predictions))


def tally_column(entry: dict[str, Any], values: Any) -> drift.Tally:
    """Count one Arrow column of a window (numbers, or labels with nulls) into a profile entry's buckets."""
    import pyarrow.compute as pc

    if entry["kind"] == "numeric":
        return drift.tally(entry, float_values(values.cast("float64")))
    counts = pc.value_counts(values.drop_null())
    labels = counts.field("values").to_pylist()  # one per distinct label, not per row
    tallied = dict(zip(labels, counts.field("counts").to_pylist(), strict=True))
    return drift.label_tally(entry, tallied, values.null_count)
