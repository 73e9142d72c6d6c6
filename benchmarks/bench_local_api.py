"""The local API as a client sees it: HTTP with keep-alive against `loopml local up`'s gateway, in one run.

The serving benchmark's model (GradientBoosting-100 on 20 features) is the champion of a local cloud whose API is
served over plain HTTP on loopback, API key checks and all. One keep-alive client, one request at a time:

* 1-record requests, p50 and p99, beside scikit-learn's `predict_proba` on the same record (one thread);
* 1000-record requests, in rows per second;
* 1-record requests while a training of 1 M rows runs on the same local cloud (the demo's churn data uploaded to
  `incoming/`: validation, then the pipeline), p50 and p99 over the whole time `train_model` runs.

    python benchmarks/bench_local_api.py [--json] [--requests 2000] [--training-rows 1000000]
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "layers" / "core"))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import joblib  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from bench_serving import MODEL, TRAIN_ROWS, as_records, bench_contract, register_champion, synthetic  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from infra import declaration as decl  # noqa: E402
from infra.declaration import KeyLimits  # noqa: E402
from infra.demo import data  # noqa: E402
from infra.keys import ApiGatewayKeys  # noqa: E402
from infra.local.api_gateway import ApiServer  # noqa: E402
from infra.local.cloud import LocalCloud  # noqa: E402
from loopml_core.adapters.table import DynamoTable  # noqa: E402
from loopml_core.contract import load_contract  # noqa: E402
from loopml_core.registry import Registry  # noqa: E402
from loopml_core.training import export_onnx, fit_pipeline  # noqa: E402

BATCH = 1_000
# Goals (issue: the local API stays responsive).
GOAL_ROWS_PER_S = 100_000
GOAL_P99_DURING_TRAINING_MS = 100.0
UNLIMITED = KeyLimits(rate_per_s=1_000_000, burst=1_000_000, quota=1_000_000_000)


class KeepAliveClient:
    """One HTTP/1.1 connection, reused for every request, as a client library's session would."""

    def __init__(self, url: str, api_key: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.connection = http.client.HTTPConnection(host, int(port))
        self.headers = {"Content-Type": "application/json", decl.API.api_key_header: api_key}

    def predict(self, body: bytes) -> dict[str, Any]:
        self.connection.request("POST", f"/v1/models/{MODEL}/predict", body=body, headers=self.headers)
        reply = self.connection.getresponse()
        data = reply.read()
        if reply.status != 200:
            raise RuntimeError(f"{reply.status}: {data[:300]!r}")
        answer: dict[str, Any] = json.loads(data)
        return answer


def timed_ms(call: Any, runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter_ns()
        call()
        samples.append((time.perf_counter_ns() - started) / 1e6)
    return samples


def percentile(samples: list[float], q: float) -> float:
    return float(np.percentile(samples, q))


def start_training(cloud: LocalCloud, rows: int) -> None:
    """Upload the demo's churn data as a user would: validation accepts it and starts the pipeline."""
    registry = Registry(DynamoTable(cloud.names.registry_table, cloud.client("dynamodb")), actor="bench")
    registry.declare_dataset(load_contract((decl.ROOT / "infra" / "demo" / "churn.yaml").read_text()))
    body = data.to_csv(data.customers(rows, seed=7))
    cloud.client("s3").put_object(Bucket=cloud.names.data_bucket, Key="incoming/churn/large.csv", Body=body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print every figure as one JSON object, last")
    parser.add_argument("--requests", type=int, default=2_000, help="1-record requests timed")
    parser.add_argument("--training-rows", type=int, default=1_000_000, help="rows of the training run beside")
    args = parser.parse_args()

    contract = bench_contract()
    frame = synthetic(TRAIN_ROWS, seed=1)
    pipeline = fit_pipeline(contract, frame)
    onnx_model = export_onnx(contract, pipeline)
    records = as_records(synthetic(BATCH, seed=2), contract.feature_names)
    one = json.dumps({"records": records[:1]}).encode()
    thousand = json.dumps({"records": records}).encode()
    row = pd.DataFrame.from_records(records[:1], columns=contract.feature_names)

    os.environ.setdefault("LOOPML_HOME", str(ROOT / ".build" / "bench-local-api"))
    with LocalCloud() as cloud, threadpool_limits(limits=1):
        buffer = io.BytesIO()
        joblib.dump(pipeline, buffer)
        register_champion(cloud, contract, onnx_model, buffer.getvalue())
        key = ApiGatewayKeys(cloud.client("apigateway")).create("bench-local-api", UNLIMITED)
        assert key.value is not None
        server = ApiServer(cloud, port=0, tls=False).start()
        try:
            client = KeepAliveClient(server.url, key.value)
            timed_ms(lambda: client.predict(one), 200)  # warm: the model loaded, connections made
            single = timed_ms(lambda: client.predict(one), args.requests)
            sklearn = timed_ms(lambda: pipeline.predict_proba(row), args.requests)
            batches = timed_ms(lambda: client.predict(thousand), 60)
            rows_per_s = BATCH / (statistics.median(batches) / 1000)

            start_training(cloud, args.training_rows)
            deadline = time.monotonic() + 600
            while cloud.runner.running("train_model") == 0:
                if time.monotonic() > deadline:
                    raise RuntimeError("the training did not start")
                time.sleep(0.01)
            during: list[float] = []
            while cloud.runner.running("train_model"):
                during += timed_ms(lambda: client.predict(one), 1)
            cloud.wait_for_idle(timeout=600)
        finally:
            server.stop()

    figures = {
        "local_p50_ms": percentile(single, 50),
        "local_p99_ms": percentile(single, 99),
        "sklearn_p50_ms": percentile(sklearn, 50),
        "sklearn_p99_ms": percentile(sklearn, 99),
        "local_rows_per_s_1000": rows_per_s,
        "training_rows": args.training_rows,
        "requests_during_training": len(during),
        "during_training_p50_ms": percentile(during, 50) if during else None,
        "during_training_p99_ms": percentile(during, 99) if during else None,
    }
    report(figures)
    if args.json:
        print(json.dumps(figures))


def report(figures: dict[str, Any]) -> None:
    during = figures["requests_during_training"]
    ok_single = figures["local_p50_ms"] < figures["sklearn_p50_ms"]
    ok_rows = figures["local_rows_per_s_1000"] >= GOAL_ROWS_PER_S
    ok_training = bool(during) and figures["during_training_p99_ms"] <= GOAL_P99_DURING_TRAINING_MS
    print(f"local API over HTTP keep-alive, model {MODEL} (GradientBoosting-100, 20 features)")
    print(f"{'case':<46}{'p50 ms':>10}{'p99 ms':>10}")
    print(f"{'1 record, local API':<46}{figures['local_p50_ms']:>10.3f}{figures['local_p99_ms']:>10.3f}")
    sklearn = "1 record, scikit-learn predict_proba"
    print(f"{sklearn:<46}{figures['sklearn_p50_ms']:>10.3f}{figures['sklearn_p99_ms']:>10.3f}")
    if during:
        label = f"1 record during a {figures['training_rows']:,}-row training"
        print(f"{label:<46}{figures['during_training_p50_ms']:>10.3f}{figures['during_training_p99_ms']:>10.3f}")
    print(f"1000-record requests: {figures['local_rows_per_s_1000']:,.0f} rows/s")
    print(f"goal 1 record faster than scikit-learn: {'MET' if ok_single else 'MISSED'}")
    print(f"goal >= {GOAL_ROWS_PER_S:,} rows/s at 1000 records: {'MET' if ok_rows else 'MISSED'}")
    print(
        f"goal p99 <= {GOAL_P99_DURING_TRAINING_MS:.0f} ms during training ({during} requests): "
        f"{'MET' if ok_training else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
