"""The monitoring check end to end on the local cloud: a million captured predictions, through the delivery path.

Provisions the local cloud, registers a champion of the 20-feature benchmark contract with a baseline profiled from
200 k rows, and sends the predictions' capture lines the way the predict function does: written to its log group,
passed by the subscription filter to the Firehose stream, buffered, partitioned and written to S3 as gzipped
batches. Then it invokes the `drift_check` handler through the Lambda API, as the schedule does, and prints how long
the check took, its peak memory, and what it found.

    python benchmarks/bench_monitoring.py [--predictions 1000000] [--per-request 100]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "layers" / "core"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _datagen
import numpy as np

from infra import declaration as decl
from infra.local.cloud import LocalCloud
from infra.local.seed import register_model
from loopml_core.capture import capture_lines, retention_class
from loopml_core.clock import iso
from loopml_core.contract import load_contract
from loopml_core.drift import build_profile

GOAL_SECONDS = 30.0
GOAL_MEMORY_MB = 1024.0
SHIFTED = ("float_2", "int_3", "cat_1")  # what changes between the baseline and live traffic


def columns(n: int, seed: int, *, shifted: bool) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    data: dict[str, np.ndarray] = {}
    for name, (low, high) in _datagen.INTS.items():
        top = high if not (shifted and name in SHIFTED) else (low + high) // 2
        data[name] = rng.integers(low, top + 1, n).astype(np.float64)
    for name, (low, high, nullable, kind) in _datagen.FLOATS.items():
        values = _datagen._floats(rng, kind, n, low, high)
        if shifted and name in SHIFTED:
            values = values + 150.0
        if nullable:
            values[rng.random(n) < _datagen.BACKGROUND_NULLS] = np.nan
        data[name] = values
    for name, labels in _datagen.CATEGORIES.items():
        weights = np.ones(len(labels))
        if shifted and name in SHIFTED:
            weights[0] = 4 * len(labels)
        data[name] = rng.choice(np.asarray(labels, dtype=object), n, p=weights / weights.sum())
    return data


def register_champion(cloud: LocalCloud, contract_text: str) -> None:
    from infra.cli.backend import Backend

    contract = load_contract(contract_text)
    backend = Backend.resolve()
    registry, store = backend.registry, backend.store
    registry.declare_dataset(contract)
    baseline_columns = columns(200_000, 1, shifted=False)
    labels = [{"label": label} for label in np.random.default_rng(2).choice(["no", "yes"], 200_000)]
    profile = build_profile(contract, baseline_columns, labels)
    # The check reads only the baseline: no model is needed.
    baseline = json.dumps(profile).encode()
    register_model(
        registry, store, cloud.names.artifact_bucket, contract.name, b"", dataset_rows=200_000, baseline=baseline
    )


def send_captures(cloud: LocalCloud, contract_text: str, predictions: int, per_request: int) -> tuple[int, float]:
    """Capture lines as the predict function prints them, shipped through its log group; returns lines, seconds."""
    contract = load_contract(contract_text)
    function_name = decl.FUNCTIONS[decl.CAPTURE_DELIVERY.function].physical_name()
    names = contract.feature_names
    started, lines, sent = time.perf_counter(), 0, 0
    chunk_rows = 50_000
    rng = np.random.default_rng(4)
    for chunk_start in range(0, predictions, chunk_rows):
        n = min(chunk_rows, predictions - chunk_start)
        data = columns(n, 10 + chunk_start, shifted=True)
        values = {
            name: [None if isinstance(v, float) and np.isnan(v) else v for v in data[name].tolist()] for name in names
        }
        labels = rng.choice(["no", "yes"], n).tolist()
        printed: list[str] = []
        for first in range(0, n, per_request):
            count = min(per_request, n - first)
            records = [{name: values[name][first + i] for name in names} for i in range(count)]
            outputs = [{"label": labels[first + i], "probabilities": {"no": 0.5, "yes": 0.5}} for i in range(count)]
            printed += capture_lines(
                model=contract.name,
                version=1,
                retention=retention_class(contract.monitoring.retention_days),
                request_id=f"req-{chunk_start + first}",
                at=iso(),
                features=names,
                records=records,
                outputs=outputs,
                classes=["no", "yes"],
            )
        for start in range(0, len(printed), 200):
            with cloud.runner.moto_lock:
                cloud.ship_logs(function_name, "\n".join(printed[start : start + 200]) + "\n")
        lines += len(printed)
        sent += n
        print(f"\r  captured {sent:,} / {predictions:,} predictions", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    cloud.flush_deliveries()
    return lines, time.perf_counter() - started


class PeakRss:
    """Samples this process's resident memory every few milliseconds while the check runs."""

    def __init__(self) -> None:
        self.peak = self.start = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._rss())

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--predictions", type=int, default=1_000_000)
    parser.add_argument("--per-request", type=int, default=100, help="records per captured request (default 100)")
    args = parser.parse_args()
    contract_text = _datagen.contract_yaml()
    with tempfile.TemporaryDirectory() as home:
        os.environ["LOOPML_HOME"] = home
        with LocalCloud(Path(home)) as cloud:
            register_champion(cloud, contract_text)
            lines, seconds = send_captures(cloud, contract_text, args.predictions, args.per_request)
            bucket = cloud.names.artifact_bucket
            s3 = cloud.client("s3")
            objects = [
                o
                for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="captures/")
                for o in page.get("Contents", [])
            ]
            print(
                f"delivery: {args.predictions:,} predictions in {lines:,} capture lines ({args.per_request}/request) "
                f"-> {len(objects)} gzipped batches, {sum(o['Size'] for o in objects) / 1e6:.1f} MB in S3 "
                f"(written in {seconds:.1f}s)"
            )
            event = {
                "version": "0",
                "id": "bench",
                "detail-type": "Scheduled Event",
                "source": "aws.events",
                "account": cloud.names.account,
                "time": "1970-01-01T00:00:00Z",
                "region": cloud.names.region,
                "resources": [],
                "detail": {"model": "bench-validation"},
            }
            with PeakRss() as memory:
                started = time.perf_counter()
                check = cloud.invoke("drift_check", event)["checks"][0]
                elapsed = time.perf_counter() - started
    grown = (memory.peak - memory.start) / 2**20
    print(
        f"drift_check handler: {elapsed:.2f}s for {check['rows']:,} rows ({check['rows'] / elapsed:,.0f} rows/s), "
        f"memory grew by {grown:.0f} MB during the check (process peak {memory.peak / 2**20:.0f} MB)"
    )
    print(f"status {check['status']}; drifted {check['drifted']} (shifted: {list(SHIFTED)}); report {check['report']}")
    print(f"goal: check <= {GOAL_SECONDS:.0f}s: {'MET' if elapsed <= GOAL_SECONDS else 'MISS'} ({elapsed:.1f}s)")
    print(
        f"goal: check memory <= {GOAL_MEMORY_MB:.0f} MB: {'MET' if grown <= GOAL_MEMORY_MB else 'MISS'} "
        f"({grown:.0f} MB)"
    )


if __name__ == "__main__":
    main()
