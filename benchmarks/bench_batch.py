"""Batch scoring throughput: a 1 M-row file through the batch state machine's Distributed Map on the local cloud,
against what a user would run instead on the same file, in the same run.

    python benchmarks/bench_batch.py [--rows 1000000] [--format csv|parquet] [--algorithm gradient_boosting]

Measured on the same file (the churn demo's five features, an id and a free-text column; the demo contract's default
algorithm unless told), each baseline in a fresh process (its imports, its own peak memory):

* loopml batch, local cloud: the file is uploaded under batch/churn/input/ (multipart, as `aws s3 cp` sends it) ->
  the S3 trigger starts the batch state machine -> plan -> the Distributed Map runs one child execution per chunk
  of the declared size -> finish joins the parts. Timed from the upload's completion to the execution's SUCCEEDED
  (and from the upload's start). The local cloud runs the children on threads of one process, and their
  batch_score invocations take turns (one execution environment per function locally); in the cloud each is a
  Lambda invocation of its own, up to the map's MaxConcurrency at once.
* pandas + scikit-learn: `read_csv`/`read_parquet`, the fitted pipeline's `predict_proba`, the input frame with the
  prediction columns written back in the input's format.
* bare onnxruntime: pyarrow reads the file, one `session.run` over every row (onnxruntime's default threads), pyarrow
  writes the input with the prediction columns. No row is checked.
* worker memory: the peak RSS of a process scoring one chunk of the declared size, and the whole file as one chunk:
  a worker's memory does not grow with its chunk.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "layers" / "core"))
sys.path.insert(0, str(ROOT))

FEATURES = ["tenure_months", "monthly_charges", "support_calls", "plan", "region"]
CATEGORIES = {"plan": ["basic", "plus", "pro"], "region": ["north", "south", "east", "west"]}

# A bare interpreter (-S) spawns the measured child and reports the child's own peak RSS (os.wait4): spawned from
# this process, which holds the local cloud and the generated file, a child would inherit its high-water mark.
LAUNCHER = """
import os, sys, time
started = time.perf_counter()
pid = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(f"{time.perf_counter() - started!r} {usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}")
"""


def generate(rows: int, seed: int = 7) -> Any:
    """The file's rows as a pandas frame: an id, the five features, and a free-text note with commas in some."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    plan = rng.choice(CATEGORIES["plan"], rows, p=[0.5, 0.3, 0.2])
    price = np.select([plan == "basic", plan == "plus"], [30.0, 55.0], 90.0) + rng.normal(0, 6, rows)
    notes = np.where(np.arange(rows) % 10 == 0, "called twice, asked for a discount", "")
    return pd.DataFrame(
        {
            "customer_id": np.char.add("c", np.arange(rows).astype(str)),
            "tenure_months": np.minimum(600, rng.exponential(30, rows)).astype(np.int64),
            "monthly_charges": np.round(np.clip(price, 0, 1000), 2),
            "support_calls": np.minimum(100, rng.exponential(1.5, rows)).astype(np.int64),
            "plan": plan,
            "region": rng.choice(CATEGORIES["region"], rows),
            "note": notes,
        }
    )


def spawn(command: list[str]) -> tuple[float, float, str]:
    """Run `command`: wall seconds, its peak RSS in MB, what it printed. Raises if it failed."""
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as scratch:
        result, out = Path(scratch) / "result", Path(scratch) / "out"
        with out.open("wb") as stdout:
            launcher = [sys.executable, "-S", "-c", LAUNCHER, str(result), *command]
            subprocess.run(launcher, stdout=stdout, stderr=subprocess.PIPE, cwd=ROOT, check=True)
        wall, maxrss, code = result.read_text().split()
        printed = out.read_text()
        if int(code) != 0:
            raise RuntimeError(f"{command[2:4]} exited {code}: {printed[-2000:]}")
        return float(wall), int(maxrss) / 1024, printed


# -- the baselines and the worker, each run in a fresh process ---------------------------------------------------------


def child_sklearn(fmt: str, path: str, pipeline_path: str, out: str) -> dict[str, Any]:
    import pandas as pd

    with open(pipeline_path, "rb") as handle:
        pipeline = pickle.load(handle)  # the benchmark's own model, written a moment ago
    frame = pd.read_csv(path, keep_default_na=False) if fmt == "csv" else pd.read_parquet(path)
    probabilities = pipeline.predict_proba(frame[FEATURES])
    classes = [str(c) for c in pipeline.classes_]
    frame["prediction"] = [classes[i] for i in probabilities.argmax(axis=1)]
    for index, label in enumerate(classes):
        frame[f"probability_{label}"] = probabilities[:, index].round(6)
    frame["model_version"] = 1
    frame.to_csv(out, index=False) if fmt == "csv" else frame.to_parquet(out, index=False)
    return {"rows": len(frame)}


def child_onnxruntime(fmt: str, path: str, model_path: str, out: str) -> dict[str, Any]:
    import numpy as np
    import onnxruntime as ort
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    table = pcsv.read_csv(path) if fmt == "csv" else pq.read_table(path)
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    feeds = {}
    for name in FEATURES:
        column = table.column(name).combine_chunks()
        if name in CATEGORIES:
            feeds[name] = column.to_numpy(zero_copy_only=False).astype(object).reshape(-1, 1)
        else:
            feeds[name] = column.to_numpy().astype(np.float32).reshape(-1, 1)
    labels, probabilities = session.run(None, feeds)
    table = table.append_column("prediction", pa.array(labels.reshape(-1)))
    for index in range(probabilities.shape[1]):
        table = table.append_column(f"probability_{index}", pa.array(probabilities[:, index].astype(np.float64)))
    pcsv.write_csv(table, out) if fmt == "csv" else pq.write_table(table, out)
    return {"rows": table.num_rows}


def child_worker(fmt: str, path: str, model_path: str, contract_path: str, chunk_rows: str) -> dict[str, Any]:
    """One batch worker's code path on a local file: plan, then score the first chunk into a discarding sink."""
    from loopml_core.batch.planning import plan_csv, plan_parquet
    from loopml_core.batch.scoring import CsvJob, ParquetJob, Predictor, score_csv_chunk, score_parquet_chunk
    from loopml_core.contract import load_contract
    from loopml_core.serving import OnnxModel

    class Discard(io.RawIOBase):
        written = 0

        def writable(self) -> bool:
            return True

        def write(self, data: Any) -> int:
            size = len(memoryview(data).cast("B"))
            self.written += size
            return size

    contract = load_contract(Path(contract_path).read_text())
    predictor = Predictor(OnnxModel(Path(model_path).read_bytes(), contract), 1)
    sink = Discard()
    started = time.perf_counter()
    with open(path, "rb") as handle:
        if fmt == "csv":
            layout = plan_csv(handle, chunk_rows=int(chunk_rows), chunk_bytes=1 << 40)
            handle.seek(0)
            job = CsvJob(contract, layout.header, layout.header_text)
            tally = score_csv_chunk(job, layout.chunks[0], handle, predictor, sink)
        else:
            import pyarrow.parquet as pq

            chunks = plan_parquet(pq.ParquetFile(path).metadata, chunk_rows=int(chunk_rows), chunk_bytes=1 << 40)
            tally = score_parquet_chunk(ParquetJob(contract), chunks[0], handle, predictor, sink)
    return {"rows": tally.output_rows, "seconds": time.perf_counter() - started, "bytes": sink.written}


CHILDREN = {"sklearn": child_sklearn, "onnxruntime": child_onnxruntime, "worker": child_worker}


# -- the local cloud ------------------------------------------------------------------------------------------------


def register_champion(cloud: Any, contract: Any, onnx: bytes) -> None:
    from infra.local.seed import register_model
    from loopml_core.adapters.object_store import S3ObjectStore
    from loopml_core.adapters.table import DynamoTable
    from loopml_core.registry import Registry

    registry = Registry(DynamoTable(cloud.names.registry_table, cloud.client("dynamodb")), actor="bench")
    registry.declare_dataset(contract)
    register_model(registry, S3ObjectStore(cloud.client("s3")), cloud.names.artifact_bucket, "churn", onnx)


def run_local_cloud(path: Path, contract: Any, onnx: bytes, fmt: str, rows: int) -> dict[str, Any]:
    from infra import declaration as decl
    from infra.local.cloud import LocalCloud
    from loopml_core.batch import layout

    with tempfile.TemporaryDirectory(prefix="bench-batch-cloud-") as state, LocalCloud(state_dir=Path(state)) as cloud:
        register_champion(cloud, contract, onnx)
        key = f"batch/churn/input/customers.{fmt}"
        s3 = cloud.client("s3")
        started = time.perf_counter()
        s3.upload_file(str(path), cloud.names.data_bucket, key)
        uploaded = time.perf_counter()
        version = s3.head_object(Bucket=cloud.names.data_bucket, Key=key)["VersionId"]
        execution = cloud.wait_for_batch(layout.execution_name("churn", key, version), timeout=3600)
        done = time.perf_counter()
        outcome = execution.output or {}
        assert execution.status == "SUCCEEDED" and outcome.get("scored") == rows, (execution.status, outcome)
        steps: dict[str, list[float]] = {}
        for invocation in cloud.runner.invocations:
            steps.setdefault(invocation.function, []).append(invocation.seconds)
        output = s3.head_object(Bucket=cloud.names.data_bucket, Key=f"batch/churn/output/customers.{fmt}")
        return {
            "wall": done - uploaded,
            "with_upload": done - started,
            "chunks": len(steps.get("batch_score", [])),
            "plan": sum(steps.get("batch_plan", [])),
            "finish": sum(steps.get("batch_finish", [])),
            "output_mb": output["ContentLength"] / 1e6,
            "chunk_rows": decl.BATCH_CHUNK_ROWS,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--format", choices=("csv", "parquet"), default="csv")
    parser.add_argument("--algorithm", default=None, help="The contract's algorithm (default: the demo contract's).")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(CHILDREN[args.child[0]](*args.child[1:])))
        return

    import pandas as pd
    import threadpoolctl

    from infra import declaration as decl
    from infra.demo import data
    from loopml_core.contract import load_contract
    from loopml_core.training import export_onnx, fit_pipeline

    fmt, rows = args.format, args.rows
    text = (ROOT / "infra" / "demo" / "churn.yaml").read_text()
    if args.algorithm:
        text += f"algorithm: {args.algorithm}\n"
    contract = load_contract(text)
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as scratch_dir:
        scratch = Path(scratch_dir)
        with threadpoolctl.threadpool_limits(1):
            pipeline = fit_pipeline(contract, pd.DataFrame(data.customers(20_000, seed=1)))
        onnx = export_onnx(contract, pipeline)
        (scratch / "model.onnx").write_bytes(onnx)
        (scratch / "pipeline.pickle").write_bytes(pickle.dumps(pipeline))
        (scratch / "contract.yaml").write_text(text)
        frame = generate(rows)
        path = scratch / f"customers.{fmt}"
        frame.to_csv(path, index=False) if fmt == "csv" else frame.to_parquet(path, index=False, row_group_size=100_000)
        del frame
        size_mb = path.stat().st_size / 1e6
        algorithm = contract.algorithm or "gradient_boosting"
        print(f"{rows:,} rows, {fmt}, {size_mb:.0f} MB; model: {algorithm} on the churn demo contract")
        print(f"{os.cpu_count()} cores, Python {sys.version.split()[0]}\n")

        me = [sys.executable, str(Path(__file__).resolve()), "--child"]
        cloud = run_local_cloud(path, contract, onnx, fmt, rows)
        sk_wall, sk_peak, _ = spawn(
            [*me, "sklearn", fmt, str(path), str(scratch / "pipeline.pickle"), str(scratch / "a")]
        )
        ort_wall, ort_peak, _ = spawn(
            [*me, "onnxruntime", fmt, str(path), str(scratch / "model.onnx"), str(scratch / "b")]
        )
        worker = [*me, "worker", fmt, str(path), str(scratch / "model.onnx"), str(scratch / "contract.yaml")]
        _, chunk_peak, chunk_out = spawn([*worker, str(decl.BATCH_CHUNK_ROWS)])
        _, whole_peak, whole_out = spawn([*worker, str(rows)])

    report(
        rows,
        cloud,
        (sk_wall, sk_peak),
        (ort_wall, ort_peak),
        (chunk_peak, json.loads(chunk_out)),
        (whole_peak, json.loads(whole_out)),
    )


def report(
    rows: int,
    cloud: dict[str, Any],
    sklearn: tuple[float, float],
    onnxruntime: tuple[float, float],
    chunk: tuple[float, dict[str, Any]],
    whole: tuple[float, dict[str, Any]],
) -> None:
    print(f"{'':38}{'seconds':>9}{'rows/s':>12}{'peak MB':>9}")
    print(f"{'loopml batch, local cloud':38}{cloud['wall']:9.2f}{rows / cloud['wall']:12,.0f}{'-':>9}")
    print(f"{'  the same, upload included':38}{cloud['with_upload']:9.2f}{rows / cloud['with_upload']:12,.0f}{'-':>9}")
    for name, (wall, peak) in (("pandas + scikit-learn", sklearn), ("bare onnxruntime", onnxruntime)):
        print(f"{name + ' (1 process)':38}{wall:9.2f}{rows / wall:12,.0f}{peak:9.0f}")
    print()
    print(
        f"local cloud: plan {cloud['plan']:.2f} s; {cloud['chunks']} chunks of {cloud['chunk_rows']:,} rows, one child "
        f"execution each, their invocations taking turns; finish {cloud['finish']:.2f} s; output "
        f"{cloud['output_mb']:.0f} MB"
    )
    (chunk_peak, one), (whole_peak, all_rows) = chunk, whole
    print(
        f"worker memory (peak RSS, a fresh process): {chunk_peak:.0f} MB for one chunk of {one['rows']:,} rows "
        f"({one['seconds']:.2f} s), {whole_peak:.0f} MB for all {all_rows['rows']:,} rows as one chunk "
        f"({all_rows['seconds']:.2f} s)"
    )
    print(
        f"one worker alone scores {one['rows'] / one['seconds']:,.0f} rows/s on a chunk of {one['rows']:,} rows "
        f"and {all_rows['rows'] / all_rows['seconds']:,.0f} rows/s on all of them; in the cloud each chunk is a Lambda "
        "invocation of its own, up to the map's MaxConcurrency (40) at once, each with its cold start"
    )


if __name__ == "__main__":
    main()
