"""Serving speed: the predict function's real `lambda_handler` against what a user would run instead, in one run.

One model (GradientBoosting, 100 iterations, on 20 features: 5 int, 12 float, 3 category) is trained once and
registered as champion on the local cloud (moto), exactly as the tests do. Then, single-threaded:

* warm path: API Gateway proxy events go through `functions/predict/handler.py`'s `lambda_handler` and proxy replies
  come out (validation, inference, capture line, metrics and all), for 1-record and 1000-record requests; beside
  them scikit-learn's `predict_proba` on a ready DataFrame and a bare onnxruntime `session.run` on ready tensors, on
  the same model and records (both held to one thread, as the handler's session is);
* cold start: a fresh python3.12 process laid out as Lambda lays out the deployed bundle (the built layers'
  `python/` directories stacked in one `/opt/python`, the function's code directory, the runtime's boto3), with the
  `.pyc` files the layers ship, imports the handler and answers one request; the AWS calls go to a moto server on
  loopback. The same for a scikit-learn + joblib handler of the same model on the training layer;
* size: the predict function's code plus its layers, unzipped, measured as `benchmarks/package_size.py` does.

    python benchmarks/bench_serving.py [--json] [--requests 3000] [--cold-runs 7]

With --json the last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import logging
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")  # the CDK bundler's jsii, as in make
sys.path.insert(0, str(ROOT / "layers" / "core"))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _datagen  # noqa: E402
import joblib  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from package_size import unzipped_size  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from infra import declaration as decl  # noqa: E402
from infra.cdk.constructs.functions import CODE_EXCLUDES  # noqa: E402
from infra.cdk.layer_bundling import RUNTIME_PROVIDED, LayerBuilder, copy_tree, find_python  # noqa: E402
from infra.local.api_gateway import match_route, proxy_event  # noqa: E402
from infra.local.cloud import LocalCloud  # noqa: E402
from infra.local.runner import LOCAL_ONLY_ENV, LambdaContext  # noqa: E402
from infra.local.seed import register_model  # noqa: E402
from loopml_core.adapters.object_store import S3ObjectStore  # noqa: E402
from loopml_core.adapters.table import DynamoTable  # noqa: E402
from loopml_core.contract import DatasetContract, load_contract  # noqa: E402
from loopml_core.registry import Registry  # noqa: E402
from loopml_core.training import export_onnx, fit_pipeline  # noqa: E402

MODEL = "bench-serving"
TRAIN_ROWS = 8_000  # under 10,000: HistGradientBoosting's early stopping stays off, so all 100 iterations are fitted
BATCH = 1_000
PREDICT = decl.FUNCTIONS["predict"]
SKLEARN_KEY = "bench/sklearn-pipeline.joblib"
CACHE = ROOT / ".build" / "bench-serving"

# Goals (docs/serving.md).
GOAL_P99_MS = 1.0
GOAL_ROWS_PER_S = 200_000
GOAL_COLD_MS = 300.0
GOAL_COLD_SPEEDUP = 5.0
GOAL_BUNDLE_MIB = 130.0


# --- the model --------------------------------------------------------------------------------------------------------


def bench_contract() -> DatasetContract:
    """The validation benchmark's 20-feature contract, named for this benchmark."""
    return load_contract(_datagen.contract_yaml().replace("name: bench-validation", f"name: {MODEL}"))


def synthetic(rows: int, seed: int, null_rate: float = 0.02) -> pd.DataFrame:
    """Rows inside the contract, with a label that depends on several features (so the trees are not trivial)."""
    rng = np.random.default_rng(seed)
    columns: dict[str, Any] = {}
    for name, (low, high) in _datagen.INTS.items():
        columns[name] = rng.integers(low, high + 1, rows)
    for name, (low, high, nullable, kind) in _datagen.FLOATS.items():
        values = _datagen._floats(rng, kind, rows, low, high)
        if nullable:
            values = np.where(rng.random(rows) < null_rate, np.nan, values)
        columns[name] = values
    for name, labels in _datagen.CATEGORIES.items():
        columns[name] = rng.choice(labels, rows)
    frame = pd.DataFrame(columns)
    score = (
        0.02 * frame["int_0"]
        - 0.0003 * frame["int_1"]
        + 2.0 * frame["float_1"]
        - 0.002 * frame["float_4"]
        + 0.5 * np.log1p(frame["float_0"])
        + frame["cat_0"].map({"basic": 0.8, "plus": 0.2, "pro": -0.4, "team": -0.9})
        + rng.normal(0.0, 0.8, rows)
    )
    frame[_datagen.TARGET] = np.where(score > score.median(), "yes", "no")
    return frame


def as_records(frame: pd.DataFrame, names: list[str]) -> list[dict[str, Any]]:
    """Request records as a client sends them: ints as ints, a null as None."""
    records = []
    for row in frame[names].to_dict(orient="records"):
        records.append(
            {
                k: None if isinstance(v, float) and np.isnan(v) else (int(v) if isinstance(v, np.integer) else v)
                for k, v in row.items()
            }
        )
    return records


def register_champion(cloud: LocalCloud, contract: DatasetContract, onnx_model: bytes, sklearn_model: bytes) -> None:
    """The champion on the local cloud's registry and artifact bucket, as the pipeline would leave it."""
    store = S3ObjectStore(cloud.client("s3"))
    store.put(cloud.names.artifact_bucket, SKLEARN_KEY, sklearn_model)
    registry = Registry(DynamoTable(cloud.names.registry_table, cloud.client("dynamodb")), actor="bench")
    registry.declare_dataset(contract)
    register_model(registry, store, cloud.names.artifact_bucket, MODEL, onnx_model, dataset_rows=TRAIN_ROWS)


# --- the warm path ------------------------------------------------------------------------------------------------


def event_for(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The proxy event API Gateway sends for a predict request, as the local gateway builds it."""
    path = f"/v1/models/{MODEL}/predict"
    matched = match_route("POST", path)
    assert matched is not None
    route, parameters = matched
    body = json.dumps({"records": records}).encode()
    return proxy_event(route, parameters, "POST", path, {"Content-Type": "application/json"}, body)


def load_handler() -> ModuleType:
    """functions/predict/handler.py, loaded as Lambda loads it (a module named `handler`)."""
    spec = importlib.util.spec_from_file_location("bench_predict_handler", PREDICT.code_dir / "handler.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def drained_stdout() -> Iterator[None]:
    """stdout as a Lambda function has it: a pipe another process reads (Lambda's log agent; here `cat`)."""
    reader = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    assert reader.stdin is not None
    stream = open(reader.stdin.fileno(), "w", buffering=1, closefd=False)  # noqa: SIM115 - closed below
    saved = sys.stdout
    sys.stdout = stream
    try:
        yield
    finally:
        sys.stdout = saved
        stream.close()
        reader.stdin.close()
        reader.wait(timeout=10)


def interleaved_ms(cases: dict[str, list[Callable[[], object]]], block: int, seed: int = 1) -> dict[str, list[float]]:
    """Milliseconds of every call of every case. The calls run in blocks of `block` consecutive calls of one case
    (as a warm Lambda container serves one request after another), the blocks of all cases shuffled together, so
    that whatever else the machine does meanwhile weighs on each case alike."""
    blocks = [(label, calls[i : i + block]) for label, calls in cases.items() for i in range(0, len(calls), block)]
    random.Random(seed).shuffle(blocks)
    samples: dict[str, list[float]] = {label: [] for label in cases}
    for label, calls in blocks:
        for call in calls:
            started = time.perf_counter_ns()
            call()
            samples[label].append((time.perf_counter_ns() - started) / 1e6)
    return samples


def warm_figures(
    contract: DatasetContract, onnx_model: bytes, pipeline: Any, live: list[dict[str, Any]], requests: int
) -> dict[str, float]:
    import onnxruntime as ort

    names = contract.feature_names
    handler = load_handler()
    context = LambdaContext(PREDICT.physical_name(), PREDICT.memory_mb, PREDICT.timeout_s)

    def invoke(event: dict[str, Any]) -> Callable[[], object]:
        def call() -> object:
            reply = handler.lambda_handler(event, context)
            if reply["statusCode"] != 200:
                raise RuntimeError(f"the handler answered {reply['statusCode']}: {reply['body'][:500]}")
            return reply

        return call

    # What a user would run instead, on the same model and records: a session of the same options on ready tensors,
    # and the scikit-learn pipeline on a ready DataFrame (both held to one thread, as the handler's session is).
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(onnx_model, sess_options=options, providers=["CPUExecutionProvider"])

    def tensors(records: list[dict[str, Any]]) -> dict[str, Any]:
        feeds = {}
        for feature in contract.features:
            values = [r[feature.name] for r in records]
            if feature.is_numeric:
                column = np.array([np.nan if v is None else v for v in values], dtype=np.float32)
            else:
                column = np.array(["" if v is None else v for v in values], dtype=object)
            feeds[feature.name] = column.reshape(-1, 1)
        return feeds

    def batch(i: int) -> list[dict[str, Any]]:
        return [live[(i * 7 + j) % len(live)] for j in range(BATCH)]

    batches = max(30, requests // 60)
    singles = [live[i % len(live)] for i in range(requests)]
    single_cases = {
        "handler": [invoke(event_for([record])) for record in singles],
        "ort": [partial(session.run, None, tensors([record])) for record in singles],
        "sklearn": [
            partial(pipeline.predict_proba, pd.DataFrame.from_records([record], columns=names))
            for record in singles[: max(1000, requests // 3)]
        ],
    }
    batch_cases = {
        "handler": [invoke(event_for(batch(i))) for i in range(batches)],
        "ort": [partial(session.run, None, tensors(batch(i))) for i in range(batches)],
        "sklearn": [
            partial(pipeline.predict_proba, pd.DataFrame.from_records(batch(i), columns=names)) for i in range(batches)
        ],
    }
    with drained_stdout(), threadpool_limits(limits=1):
        interleaved_ms({label: calls[:100] for label, calls in single_cases.items()}, 100, seed=0)  # warm each
        interleaved_ms({label: calls[:3] for label, calls in batch_cases.items()}, 3, seed=0)
        single = interleaved_ms(single_cases, block=100)
        batched = interleaved_ms(batch_cases, block=5)

    def p(samples: list[float], q: float) -> float:
        return float(np.percentile(samples, q))

    return {
        "p50_ms": p(single["handler"], 50),
        "p99_ms": p(single["handler"], 99),
        "sklearn_p50_ms": p(single["sklearn"], 50),
        "sklearn_p99_ms": p(single["sklearn"], 99),
        "ort_p50_ms": p(single["ort"], 50),
        "ort_p99_ms": p(single["ort"], 99),
        "batch_p50_ms": p(batched["handler"], 50),
        "rows_per_s_1000": BATCH / (p(batched["handler"], 50) / 1e3),
        "sklearn_rows_per_s_1000": BATCH / (p(batched["sklearn"], 50) / 1e3),
        "ort_rows_per_s_1000": BATCH / (p(batched["ort"], 50) / 1e3),
    }


# --- cold starts ----------------------------------------------------------------------------------------------------

# What the Lambda runtime does before the first invocation, reduced to its part in a cold start: import the handler
# module from the task directory, then call it with the event. The reply goes to a pipe the benchmark reads, so the
# clock stops at the first response, not at the interpreter's exit.
BOOTSTRAP = """
import importlib, json, os, sys
module = importlib.import_module(sys.argv[1])

class Context:
    function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:" + function_name
    memory_limit_in_mb = int(os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"])
    aws_request_id = "cold-start"
    log_group_name = "/aws/lambda/" + function_name
    log_stream_name = "cold"

    def get_remaining_time_in_millis(self):
        return 29000

reply = module.lambda_handler(json.loads(sys.stdin.read()), Context())
os.write(int(sys.argv[2]), (json.dumps(reply) + "\\n").encode())
"""

# The handler a user would write instead: boto3 fetches the joblib file, scikit-learn predicts from a DataFrame.
SKLEARN_HANDLER = """
import io
import json
import os

import boto3
import joblib
import pandas as pd

s3 = boto3.client("s3")
FEATURES = json.loads(os.environ["BENCH_FEATURES"])
_model = None


def lambda_handler(event, context):
    global _model
    if _model is None:
        body = s3.get_object(Bucket=os.environ["ARTIFACT_BUCKET"], Key=os.environ["BENCH_MODEL_KEY"])["Body"].read()
        _model = joblib.load(io.BytesIO(body))
    records = json.loads(event["body"])["records"]
    probabilities = _model.predict_proba(pd.DataFrame.from_records(records, columns=FEATURES))
    classes = [str(c) for c in _model.classes_]
    predictions = [
        {"index": i, "label": classes[int(row.argmax())], "probabilities": dict(zip(classes, row.round(6).tolist()))}
        for i, row in enumerate(probabilities)
    ]
    body = json.dumps({"predictions": predictions})
    return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": body}
"""


def stacked_bundle(root: Path, layers: tuple[decl.Layer, ...], task: Path, builder: LayerBuilder) -> Path:
    """The layers' python/ directories stacked in root/opt/python, as Lambda extracts them (hard links)."""
    shutil.rmtree(root, ignore_errors=True)
    (root / "opt").mkdir(parents=True)
    for key in layers:
        copy_tree(builder.build(key) / "python", root / "opt" / "python")
    copy_tree(task, root / "task")
    return root


def runtime_packages(python: str) -> Path:
    """What the Lambda runtime provides beside the layers (boto3, botocore...), compiled for its Python as the
    runtime ships them. Taken from this environment's installed copies; cached per botocore version."""
    import botocore

    target = CACHE / f"runtime-{botocore.__version__}"
    if (target / ".complete").exists():
        return target
    shutil.rmtree(target, ignore_errors=True)
    site = Path(botocore.__file__).resolve().parent.parent
    for name in sorted(RUNTIME_PROVIDED):
        shutil.copytree(site / name, target / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    compile_for(python, target)
    (target / ".complete").touch()
    return target


def compile_for(python: str, site: Path) -> None:
    """Bytecode for every module under `site` that has none, as `infra/cdk/layer_bundling.py` compiles it."""
    subprocess.run(
        [python, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash", str(site)],
        check=False,  # a file that does not compile ships as source, as in the layers
        stdout=subprocess.DEVNULL,
    )


def cold_start_ms(python: str, bundle: Path, runtime: Path, module: str, env: dict[str, str], event: bytes) -> float:
    """Milliseconds from starting a fresh interpreter to its first response (which must be a 200)."""
    read_end, write_end = os.pipe()
    environment = {
        **env,
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": os.pathsep.join([str(bundle / "task"), str(bundle / "opt" / "python"), str(runtime)]),
        "PYTHONDONTWRITEBYTECODE": "1",  # /opt and /var/task are read-only on Lambda
        "LAMBDA_TASK_ROOT": str(bundle / "task"),
    }
    started = time.perf_counter()
    child = subprocess.Popen(
        [python, "-s", "-c", BOOTSTRAP, module, str(write_end)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=environment,
        pass_fds=(write_end,),
    )
    os.close(write_end)
    assert child.stdin is not None
    child.stdin.write(event)
    child.stdin.close()
    with os.fdopen(read_end, "rb") as replies:
        line = replies.readline()
    elapsed = (time.perf_counter() - started) * 1e3
    assert child.stderr is not None
    errors = child.stderr.read()
    child.wait(timeout=60)
    if not line:
        raise RuntimeError(f"{module} gave no reply: {errors.decode()[-3000:]}")
    reply = json.loads(line)
    if reply["statusCode"] != 200:
        raise RuntimeError(f"{module} answered {reply['statusCode']}: {reply['body'][:500]}")
    return elapsed


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cold_figures(cloud: LocalCloud, contract: DatasetContract, record: dict[str, Any], runs: int) -> dict[str, Any]:
    from moto.server import ThreadedMotoServer

    python = find_python()
    if python is None:
        raise SystemExit("cold start needs a python3.12 interpreter (Lambda's runtime); none was found")
    builder = LayerBuilder(log=lambda message: print(message, file=sys.stderr))
    work = Path(tempfile.mkdtemp(prefix="bench-serving-", dir=CACHE.parent if CACHE.parent.exists() else None))
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        runtime = runtime_packages(python)
        ours = stacked_bundle(work / "predict", PREDICT.layers, PREDICT.code_dir, builder)
        sklearn_task = work / "sklearn-task"
        sklearn_task.mkdir()
        (sklearn_task / "sklearn_handler.py").write_text(SKLEARN_HANDLER)
        sklearn_layers = (decl.Layer.CORE, decl.Layer.TRAINING)
        shipped = stacked_bundle(work / "sklearn-as-shipped", sklearn_layers, sklearn_task, builder)
        theirs = stacked_bundle(work / "sklearn", sklearn_layers, sklearn_task, builder)
        # The baseline is scikit-learn's best case, bytecode for all of it. LoopML's training layer ships none (it
        # would put the training function over Lambda's 250 MiB), but a layer of scikit-learn for serving would
        # have the room; that layer as LoopML ships it is measured too, for reference.
        compile_for(python, theirs / "opt" / "python")
        env = {
            **decl.function_environment(cloud.names, PREDICT),
            **LOCAL_ONLY_ENV,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": cloud.names.region,
            "AWS_REGION": cloud.names.region,
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
            "AWS_LAMBDA_FUNCTION_NAME": PREDICT.physical_name(),
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(PREDICT.memory_mb),
            "BENCH_FEATURES": json.dumps(contract.feature_names),
            "BENCH_MODEL_KEY": SKLEARN_KEY,
        }
        event = json.dumps(event_for([record])).encode()
        samples: dict[str, list[float]] = {"ours": [], "sklearn": [], "shipped": []}
        for attempt in range(runs + 1):  # the first of each warms the page cache and is left out
            for label, bundle, module in (("ours", ours, "handler"), ("sklearn", theirs, "sklearn_handler")):
                elapsed = cold_start_ms(python, bundle, runtime, module, env, event)
                if attempt:
                    samples[label].append(elapsed)
        for _ in range(3):
            samples["shipped"].append(cold_start_ms(python, shipped, runtime, "sklearn_handler", env, event))
        version = subprocess.run(
            [python, "-c", "import platform; print(platform.python_version())"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return {
        "cold_start_ms": statistics.median(samples["ours"]),
        "sklearn_cold_start_ms": statistics.median(samples["sklearn"]),
        "cold_start_runs_ms": [round(s, 1) for s in samples["ours"]],
        "sklearn_cold_start_runs_ms": [round(s, 1) for s in samples["sklearn"]],
        "sklearn_as_shipped_cold_start_ms": statistics.median(samples["shipped"]),
        "cold_python": f"{python} ({version})",
    }


# --- size -----------------------------------------------------------------------------------------------------------


def bundle_mib() -> float:
    builder = LayerBuilder(log=lambda message: print(message, file=sys.stderr))
    code = unzipped_size(PREDICT.code_dir, CODE_EXCLUDES)
    layers = sum(unzipped_size(builder.build(key)) for key in PREDICT.layers)
    return (code + layers) / 2**20


# --- report ---------------------------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "MET" if ok else "MISS"


def report(figures: dict[str, Any]) -> None:
    f = figures
    print(f"model: {f['model']}")
    print(f"host: {f['host']}; warm path single-threaded, scikit-learn and onnxruntime held to one thread")
    print()
    print(f"{'1 record':<48}{'p50 ms':>10}{'p99 ms':>10}")
    print(f"{'LoopML lambda_handler (proxy event -> reply)':<48}{f['p50_ms']:>10.3f}{f['p99_ms']:>10.3f}")
    print(
        f"{'scikit-learn predict_proba (ready DataFrame)':<48}{f['sklearn_p50_ms']:>10.3f}{f['sklearn_p99_ms']:>10.3f}"
    )
    print(f"{'bare onnxruntime session.run (ready tensors)':<48}{f['ort_p50_ms']:>10.3f}{f['ort_p99_ms']:>10.3f}")
    print()
    print(f"{'1000 records':<48}{'rows/s':>12}")
    print(f"{'LoopML lambda_handler':<48}{f['rows_per_s_1000']:>12,.0f}")
    print(f"{'scikit-learn predict_proba':<48}{f['sklearn_rows_per_s_1000']:>12,.0f}")
    print(f"{'bare onnxruntime session.run':<48}{f['ort_rows_per_s_1000']:>12,.0f}")
    print()
    print(f"cold start, fresh {f['cold_python']} process -> first response (median of {len(f['cold_start_runs_ms'])})")
    print(f"{'LoopML predict handler':<48}{f['cold_start_ms']:>10.1f} ms  {f['cold_start_runs_ms']}")
    sklearn = "scikit-learn + joblib handler"
    print(f"{sklearn:<48}{f['sklearn_cold_start_ms']:>10.1f} ms  {f['sklearn_cold_start_runs_ms']}")
    shipped = "  the same, training layer as shipped (no .pyc)"
    print(f"{shipped:<48}{f['sklearn_as_shipped_cold_start_ms']:>10.1f} ms  (median of 3, for reference)")
    print()
    print(f"predict function + layers, unzipped: {f['predict_bundle_mb']:.1f} MiB")
    print()
    speedup = f["sklearn_cold_start_ms"] / f["cold_start_ms"]
    goals = [
        (
            f"1 record p50 {f['p50_ms']:.3f} ms < scikit-learn p50 {f['sklearn_p50_ms']:.3f} ms",
            f["p50_ms"] < f["sklearn_p50_ms"],
        ),
        (f"1 record p99 {f['p99_ms']:.3f} ms < {GOAL_P99_MS:g} ms", f["p99_ms"] < GOAL_P99_MS),
        (
            f"1000 records {f['rows_per_s_1000']:,.0f} rows/s >= {GOAL_ROWS_PER_S:,}",
            f["rows_per_s_1000"] >= GOAL_ROWS_PER_S,
        ),
        (f"cold start {f['cold_start_ms']:.0f} ms <= {GOAL_COLD_MS:g} ms", f["cold_start_ms"] <= GOAL_COLD_MS),
        (
            f"cold start {speedup:.1f}x faster than scikit-learn + joblib (>= {GOAL_COLD_SPEEDUP:g}x)",
            speedup >= GOAL_COLD_SPEEDUP,
        ),
        (
            f"bundle {f['predict_bundle_mb']:.1f} MiB <= {GOAL_BUNDLE_MIB:g} MiB",
            f["predict_bundle_mb"] <= GOAL_BUNDLE_MIB,
        ),
    ]
    for text, ok in goals:
        print(f"goal: {text}: {verdict(ok)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="end with one JSON object holding every figure")
    parser.add_argument("--requests", type=int, default=3_000, help="1-record requests timed (default 3000)")
    parser.add_argument("--cold-runs", type=int, default=7, help="cold starts per handler (default 7)")
    args = parser.parse_args()
    started = time.perf_counter()
    CACHE.mkdir(parents=True, exist_ok=True)

    contract = bench_contract()
    pipeline = fit_pipeline(contract, synthetic(TRAIN_ROWS, seed=1))
    onnx_model = export_onnx(contract, pipeline)
    sklearn_model = io.BytesIO()
    joblib.dump(pipeline, sklearn_model)
    live = as_records(synthetic(2_000, seed=2), contract.feature_names)
    estimator = pipeline.named_steps["model"]

    figures: dict[str, Any] = {
        "model": f"{type(estimator).__name__} ({estimator.n_iter_} iterations, {len(contract.features)} features), "
        f"trained on {TRAIN_ROWS} rows; ONNX {len(onnx_model) / 1024:.0f} KiB",
        "host": f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs",
    }
    with tempfile.TemporaryDirectory() as state, LocalCloud(state_dir=Path(state)) as cloud:
        register_champion(cloud, contract, onnx_model, sklearn_model.getvalue())
        for name, value in {**decl.function_environment(cloud.names, PREDICT), **LOCAL_ONLY_ENV}.items():
            os.environ[name] = value
        os.environ["AWS_LAMBDA_FUNCTION_NAME"] = PREDICT.physical_name()
        figures.update(warm_figures(contract, onnx_model, pipeline, live, args.requests))
        figures.update(cold_figures(cloud, contract, live[0], args.cold_runs))
    figures["predict_bundle_mb"] = bundle_mib()
    figures["seconds"] = time.perf_counter() - started
    report(figures)
    print(f"total benchmark time: {figures['seconds']:.0f} s")
    if args.json:
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()}))


if __name__ == "__main__":
    main()
