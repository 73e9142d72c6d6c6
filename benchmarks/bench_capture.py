"""What capture costs a prediction: the predict path with capture on against capture off, in one run.

Trains the demo's churn model once, then serves the same requests through `PredictionService` (the code the predict
handler runs, on in-memory registry and store so no network time hides the difference), alternating capture on and
off request by request. Capture on writes each request's capture line to a pipe drained by another thread, as
Lambda's runtime drains a function's stdout. For scale it also times what capture replaced: one S3 PUT of the
request's capture document per prediction, against moto in-process (on AWS a PUT takes tens of milliseconds).

    python benchmarks/bench_capture.py [--requests 3000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "layers" / "core"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd

from infra.demo import data
from infra.local.seed import register_model
from loopml_core.adapters.object_store import InMemoryObjectStore
from loopml_core.adapters.table import InMemoryTable
from loopml_core.capture import LogStreamSink
from loopml_core.contract import load_contract
from loopml_core.logic.inference import PredictionService
from loopml_core.registry import Registry
from loopml_core.training import train

GOAL_MICROSECONDS = 50.0
CONTRACT = load_contract((Path(__file__).resolve().parent.parent / "infra" / "demo" / "churn.yaml").read_text())


class NoCapture:
    def emit(self, lines: Iterator[str]) -> None:
        del lines  # capture switched off: the lines are never even built


def drained_pipe() -> LogStreamSink:
    """A sink writing to a pipe another thread reads, flushing every line, like a Lambda function's stdout."""
    read_end, write_end = os.pipe()
    reader = os.fdopen(read_end, "rb", buffering=0)
    threading.Thread(target=lambda: [None for _ in iter(lambda: reader.read(1 << 16), b"")], daemon=True).start()
    stream = os.fdopen(write_end, "w", buffering=1)
    return LogStreamSink(stream.write)


def champion_registry(store: InMemoryObjectStore) -> Registry:
    result = train(CONTRACT, pd.DataFrame(data.customers(3_000, seed=1)))
    registry = Registry(InMemoryTable())
    registry.declare_dataset(CONTRACT)
    onnx_model, baseline = result.onnx_model, json.dumps(result.baseline).encode()
    register_model(
        registry, store, "artifacts", "churn", onnx_model, dataset_rows=3_000, metrics=result.metrics, baseline=baseline
    )
    return registry


def time_pair(on: PredictionService, off: PredictionService, records: list, requests: int) -> tuple[float, float]:
    """p50 microseconds of a prediction with capture on and off, alternating so machine drift hits both alike."""
    timings: dict[str, list[float]] = {"on": [], "off": []}
    for i in range(requests):
        for label, service in (("on", on), ("off", off)) if i % 2 else (("off", off), ("on", on)):
            started = time.perf_counter()
            service.predict("churn", records, f"req-{i}")
            timings[label].append((time.perf_counter() - started) * 1e6)
    return statistics.median(timings["on"]), statistics.median(timings["off"])


def s3_put_p50(document: bytes, requests: int) -> float:
    import boto3
    from moto import mock_aws

    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="captures")
        timings = []
        for i in range(requests):
            started = time.perf_counter()
            s3.put_object(Bucket="captures", Key=f"captures/churn/{i}.json", Body=document)
            timings.append((time.perf_counter() - started) * 1e6)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3_000, help="requests per size and setting (default 3000)")
    args = parser.parse_args()
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(variable, "testing")

    store = InMemoryObjectStore()
    registry = champion_registry(store)
    on = PredictionService(store, registry, drained_pipe())
    off = PredictionService(store, registry, NoCapture())
    print(f"capture cost: {CONTRACT.name} ({len(CONTRACT.features)} features), {args.requests} requests per row")
    print(f"{'records/request':>16} {'capture off p50':>16} {'capture on p50':>15} {'added p50':>10}")
    added_single = 0.0
    for size in (1, 10, 100):
        records = data.requests_for(data.customers(size, seed=5))
        for _ in range(200):  # warm both paths
            on.predict("churn", records, "warm")
            off.predict("churn", records, "warm")
        with_capture, without = time_pair(on, off, records, args.requests)
        added = with_capture - without
        added_single = added if size == 1 else added_single
        print(f"{size:>16} {without:>14.1f}us {with_capture:>13.1f}us {added:>8.1f}us")
    line = json.dumps({"records": data.requests_for(data.customers(1, seed=5))}).encode()
    print(f"what it replaced: one S3 PUT per request, p50 {s3_put_p50(line, min(args.requests, 1_000)):.0f}us on moto")
    verdict = "MET" if added_single <= GOAL_MICROSECONDS else "MISS"
    print(
        f"goal: capture adds <= {GOAL_MICROSECONDS:.0f}us p50 to a single-record request: {verdict} "
        f"({added_single:.1f}us)"
    )


if __name__ == "__main__":
    main()
