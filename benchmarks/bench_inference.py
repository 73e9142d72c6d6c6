"""Inference latency: the exported ONNX model on onnxruntime against the scikit-learn pipeline it came from.

Fits one pipeline on synthetic data, exports it exactly as the training step does, then times both on the same
records in the same process: single-record and 100-record batch requests, from records to serving-shaped outputs.

    python benchmarks/bench_inference.py [--algorithm gradient_boosting] [--rows 5000]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# Standalone script: make loopml_core importable without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "layers" / "core"))

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from loopml_core.contract import DatasetContract
from loopml_core.serving import OnnxModel, classification_outputs
from loopml_core.training import export_onnx, fit_pipeline

PLANS = ("basic", "plus", "pro", "enterprise")
CHANNELS = ("web", "store", "phone", "partner", "app")
BATCH = 100
SINGLE_RUNS = 500
BATCH_RUNS = 150


def contract(algorithm: str | None) -> DatasetContract:
    return DatasetContract.model_validate(
        {
            "name": "bench-churn",
            "task": "classification",
            "target": "churn",
            "algorithm": algorithm,
            "features": [
                {"name": "age", "type": "int", "min": 18, "max": 90},
                {"name": "tenure_months", "type": "int", "min": 0, "max": 120},
                {"name": "monthly_spend", "type": "float", "min": 0},
                {"name": "support_calls", "type": "int", "min": 0},
                {"name": "discount", "type": "float", "nullable": True},
                {"name": "plan", "type": "category", "values": list(PLANS)},
                {"name": "channel", "type": "category", "values": list(CHANNELS)},
            ],
        }
    )


def synthetic(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 90, n),
            "tenure_months": rng.integers(0, 120, n),
            "monthly_spend": rng.gamma(2.0, 30.0, n).round(2),
            "support_calls": rng.poisson(1.5, n),
            "discount": np.where(rng.random(n) < 0.1, np.nan, rng.uniform(0, 0.3, n).round(3)),
            "plan": rng.choice(PLANS, n, p=[0.4, 0.3, 0.2, 0.1]),
            "channel": rng.choice(CHANNELS, n),
        }
    )
    score = (
        -0.02 * frame["tenure_months"]
        + 0.5 * frame["support_calls"]
        - 0.01 * frame["monthly_spend"]
        + frame["plan"].map({"basic": 0.8, "plus": 0.3, "pro": -0.2, "enterprise": -0.8})
        + 2.0 * frame["discount"].fillna(0.0)
        + rng.normal(0.0, 0.7, n)
    )
    frame["churn"] = np.where(score > 0, "yes", "no")
    return frame


def to_records(frame: pd.DataFrame, names: Sequence[str]) -> list[dict[str, Any]]:
    """Validated request records, as the predict function receives them (None for a null)."""
    out = []
    for row in frame[list(names)].to_dict(orient="records"):
        out.append({k: None if isinstance(v, float) and np.isnan(v) else v for k, v in row.items()})
    return out


def timings_ms(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    for _ in range(10):
        fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - start) / 1e6)
    p50, p95 = np.percentile(samples, [50, 95])
    return float(p50), float(p95)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algorithm", default=None, help="contract algorithm (default: the training default)")
    parser.add_argument("--rows", type=int, default=5000, help="synthetic training rows")
    args = parser.parse_args()

    started = time.perf_counter()
    spec = contract(args.algorithm)
    pipeline = fit_pipeline(spec, synthetic(args.rows, seed=1))
    onnx_bytes = export_onnx(spec, pipeline)
    model = OnnxModel(onnx_bytes, spec)
    classes = [str(c) for c in pipeline.named_steps["model"].classes_]

    def sklearn_predict(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        frame = pd.DataFrame.from_records(records, columns=spec.feature_names)
        probabilities = pipeline.predict_proba(frame)
        labels = [classes[i] for i in np.argmax(probabilities, axis=1)]
        return classification_outputs(labels, probabilities, classes)

    live = to_records(synthetic(2000, seed=2), spec.feature_names)
    batch = live[:BATCH]
    onnx_out, sklearn_out = model.predict(live), sklearn_predict(live)
    agreement = np.mean([a["label"] == b["label"] for a, b in zip(onnx_out, sklearn_out, strict=True)])
    worst = max(
        abs(a["probabilities"][c] - b["probabilities"][c])
        for a, b in zip(onnx_out, sklearn_out, strict=True)
        for c in classes
    )

    # The ONNX session runs one intra-op thread; holding scikit-learn's OpenMP pool to one thread too compares the
    # libraries rather than the thread counts, and keeps p95 from measuring OpenMP spin-waits on a busy host.
    with threadpool_limits(limits=1):
        cases = {
            "onnxruntime  single": timings_ms(lambda: model.predict([live[0]]), SINGLE_RUNS),
            "scikit-learn single": timings_ms(lambda: sklearn_predict([live[0]]), SINGLE_RUNS),
            f"onnxruntime  batch {BATCH}": timings_ms(lambda: model.predict(batch), BATCH_RUNS),
            f"scikit-learn batch {BATCH}": timings_ms(lambda: sklearn_predict(batch), BATCH_RUNS),
        }

    print(f"model: {type(pipeline.named_steps['model']).__name__} ({model.algorithm}), trained on {args.rows} rows")
    print(
        f"host: {platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs; "
        "both libraries held to one thread"
    )
    print(f"ONNX model size: {len(onnx_bytes)} bytes")
    print(f"parity on {len(live)} records: labels agree {agreement:.2%}, max probability difference {worst:.2g}")
    print(f"{'case':<26}{'p50 ms':>10}{'p95 ms':>10}")
    for name, (p50, p95) in cases.items():
        print(f"{name:<26}{p50:>10.3f}{p95:>10.3f}")
    for size in ("single", f"batch {BATCH}"):
        onnx_p50 = cases[f"onnxruntime  {size}"][0]
        sklearn_p50 = cases[f"scikit-learn {size}"][0]
        print(f"speed-up at p50, {size}: {sklearn_p50 / onnx_p50:.1f}x")
    print(f"total benchmark time: {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
