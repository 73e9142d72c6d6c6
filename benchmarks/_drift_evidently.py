"""The Evidently side of benchmarks/bench_drift.py: run inside the Evidently venv, never the project's.

    .build/bench-evidently-venv/bin/python benchmarks/_drift_evidently.py DATA_DIR MODE THRESHOLD

Reads `baseline.parquet`, `current.parquet` and `contract.json` from DATA_DIR (the files LoopML's side reads), builds
Evidently Datasets with the contract's column types, and runs a Report in PSI mode with `THRESHOLD`. MODE:

* `preset`: `DataDriftPreset(method="psi", threshold=...)`, what a user picks for "is my data drifting".
* `value-drift`: one `ValueDrift(column, method="psi", threshold=...)` per feature and nothing else, the least
  Evidently computes for a per-column PSI verdict (the preset also counts drifted columns and renders tables,
  which computes the drift again).

Timed: from the two DataFrames in memory to the verdicts in hand (Datasets, `Report.run` with its tests, reading
scores and verdicts out of the snapshot); the Parquet read is timed apart. Prints one JSON object.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from typing import Any


def main() -> None:
    data_dir, mode, threshold = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    started = time.perf_counter()
    import evidently
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    imported = time.perf_counter() - started
    contract = json.loads((data_dir / "contract.json").read_text())
    numeric = [f["name"] for f in contract["features"] if f["type"] != "category"]
    categorical = [f["name"] for f in contract["features"] if f["type"] == "category"]

    started = time.perf_counter()
    reference = pd.read_parquet(data_dir / "baseline.parquet")
    current = pd.read_parquet(data_dir / "current.parquet")
    read = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    peak_before_report = peak / (1 << 20) if sys.platform == "darwin" else peak / 1024

    started = time.perf_counter()
    # Types declared, not inferred: a tied integer column must stay numerical, as it is in the contract.
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    reference_set = Dataset.from_pandas(reference, data_definition=definition)
    current_set = Dataset.from_pandas(current, data_definition=definition)
    datasets = time.perf_counter() - started
    if mode == "preset":
        metrics: list[Any] = [DataDriftPreset(method="psi", threshold=threshold)]
    else:
        metrics = [ValueDrift(column=name, method="psi", threshold=threshold) for name in [*numeric, *categorical]]
    # With tests, Evidently itself says which columns drifted (a failed "Value Drift for column" test).
    results = Report(metrics, include_tests=True).run(current_set, reference_set).dict()
    scores: dict[str, float] = {}
    for metric in results["metrics"]:
        if metric["config"]["type"].endswith(":ValueDrift"):
            scores[metric["config"]["column"]] = float(metric["value"])
    drifted = {
        test["metric_config"]["params"]["column"]
        for test in results["tests"]
        if test["metric_config"]["params"]["type"].endswith(":ValueDrift") and test["status"] == "FAIL"
    }
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "version": evidently.__version__,
                "pandas": pd.__version__,
                "mode": mode,
                "rows": len(current),
                "baseline_rows": len(reference),
                "import_seconds": imported,
                "read_seconds": read,
                "seconds": seconds,
                "dataset_seconds": datasets,
                "peak_mb_before_report": peak_before_report,
                "psi": scores,
                "drifted": sorted(drifted),
            }
        )
    )


if __name__ == "__main__":
    main()
