"""Batch scoring: a file uploaded under `batch/<model>/input/` scored by the champion, chunk by chunk.

`layout` (pure, no third-party import) names every key and tag, so the start function (core layer only), the steps
and the CLI agree; `csv_records` and `planning` cut a file into chunks without loading it; `rows` checks rows
against the contract; `scoring` scores one chunk in bounded memory; `report` merges the chunks' findings.
"""
