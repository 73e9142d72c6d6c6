"""Labels joined with captured predictions: once per version that predicted, never twice for a redelivered batch."""

from __future__ import annotations

import gzip
import io
import json

import pyarrow as pa

from infra import declaration as decl
from loopml_core.capture_reader import capture_batches
from loopml_core.contract import load_contract
from loopml_core.logic.labels import PendingLabels

CONTRACT = load_contract((decl.ROOT / "infra" / "demo" / "churn.yaml").read_text())


def line(version: int, predictions: list[str], *, shadow: bool = False) -> str:
    document = {
        "loopml_capture": 1,
        "model": "churn",
        "version": version,
        "retention": "30d",
        "request_id": "req-1",
        "at": "2026-11-24T10:00:00.000000Z",
        "first": 0,
        "n": len(predictions),
        "prediction": predictions,
        "classes": ["no", "yes"],
        "probabilities": [[0.2, 0.8] if p == "yes" else [0.9, 0.1] for p in predictions],
    }
    if shadow:
        document["shadow"] = True
    return json.dumps(document)


def test_a_shadowed_request_counts_for_both_versions_and_a_redelivery_for_neither():
    # Given the champion's answer (v1), the challenger's shadow scoring of the same request (v2), and the champion's
    # line delivered twice
    lines = [line(1, ["yes", "no", "yes"]), line(2, ["no", "no", "yes"], shadow=True), line(1, ["yes", "no", "yes"])]
    stream = io.BytesIO(gzip.compress(("\n".join(lines) + "\n").encode()))
    labels = pa.table({"request_id": ["req-1"] * 3, "index": pa.array([0, 1, 2], pa.int64()), "label": ["yes"] * 3})
    pending = PendingLabels("labels-pending/churn/a.parquet", "labels/churn/a.csv", "2026-12-24", labels)
    # When the labels are joined with what was captured
    for batch in capture_batches(CONTRACT, stream, features=False):
        pending.join(batch, "churn")
    counts = pending.counts(CONTRACT)
    # Then each version is judged on the three labels once: v1 got 2 right, v2 got 1
    assert {version: c.rows for (version, _), c in counts.items()} == {1: 3, 2: 3}
    right = {version: int(c.confusion.trace()) for (version, _), c in counts.items() if c.confusion is not None}
    assert right == {1: 2, 2: 1}
