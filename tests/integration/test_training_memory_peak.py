"""The memory estimate training checks before it fetches a dataset holds against the measured peak of training.

Each measurement is a fresh process, set up like the training Lambda: pyarrow cannot be imported (the training layer
has none, so pandas keeps text as Python strings), boto3, Powertools and `loopml_core.training` are imported, then the
dataset's bytes are read, `read_dataset` and `train` run, and the peak resident set size is reported.
The factors themselves were set from the same measurement at 100k-1M rows (see `training.py`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from loopml_core import training
from loopml_core.contract import DatasetContract

ROOT = Path(__file__).resolve().parents[2]
MEASURE = textwrap.dedent(
    """
    import importlib.abc, json, resource, sys

    class NoPyarrow(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "pyarrow":
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    def peak_mb():
        # Linux keeps ru_maxrss across exec, so a child of a large process (pytest) would report the parent's size:
        # the new address space's high-water mark, VmHWM, is this process's own peak.
        try:
            with open("/proc/self/status") as status:
                return next(int(l.split()[1]) for l in status if l.startswith("VmHWM:")) / 2**10
        except OSError:
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # macOS: bytes

    sys.meta_path.insert(0, NoPyarrow())
    import aws_lambda_powertools, boto3  # what every handler imports
    from loopml_core.contract import DatasetContract
    from loopml_core.training import read_dataset, train

    contract = DatasetContract.model_validate_json(sys.argv[1])
    base = peak_mb()
    body = open(sys.argv[2], "rb").read()
    frame = read_dataset(contract, body, sys.argv[3])
    del body
    train(contract, frame)
    print(json.dumps({"base_mb": base, "peak_mb": peak_mb()}))
    """
)


def twenty_features(rows: int, seed: int) -> tuple[DatasetContract, pd.DataFrame]:
    """12 numeric features (3 nullable) and 8 categories of 5 values, with a learnable binary target."""
    rng = np.random.default_rng(seed)
    features: list[dict[str, object]] = []
    columns: dict[str, object] = {}
    score = np.zeros(rows)
    for i in range(12):
        if i % 2 == 0:
            ints = rng.integers(0, 1000, rows)
            features.append({"name": f"n{i}", "type": "int"})
            columns[f"n{i}"], score = ints, score + (ints - 500) / 500 * (i % 3 - 1)
        else:
            floats = rng.lognormal(3.0, 1.0, rows)
            score = score + (np.log(floats) - 3.0) * (i % 3 - 1)
            nullable = i % 4 == 1
            if nullable:
                floats[rng.random(rows) < 0.03] = np.nan
            features.append({"name": f"n{i}", "type": "float", "nullable": nullable})
            columns[f"n{i}"] = floats
    for j in range(8):
        values = [f"v{k}_{j}" for k in range(5)]
        picks = rng.integers(0, 5, rows)
        features.append({"name": f"c{j}", "type": "category", "values": values})
        columns[f"c{j}"], score = np.array(values)[picks], score + 0.3 * (picks % 3 - 1)
    columns["target"] = np.where(score + rng.normal(0, 1, rows) > 0, "yes", "no")
    contract = DatasetContract.model_validate(
        {
            "name": "wide",
            "task": "classification",
            "target": "target",
            "features": features,
            "quality": {"max_null_fraction": 0.1},
        }
    )
    return contract, pd.DataFrame(columns)


def measure(tmp_path: Path, rows: int, file_format: str = "csv") -> tuple[DatasetContract, dict[str, float]]:
    contract, frame = twenty_features(rows, seed=rows)
    path = tmp_path / f"data-{rows}.{file_format}"
    if file_format == "parquet":
        frame.to_parquet(path, engine="pyarrow", index=False)
    else:
        frame.to_csv(path, index=False)
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, contract.model_dump_json(), str(path), file_format],
        capture_output=True,
        text=True,
        timeout=900,
        env={
            "PYTHONPATH": str(ROOT / "layers" / "core"),
            "PATH": os.environ.get("PATH", ""),
            "PYTHONWARNINGS": "ignore",
        },
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return contract, json.loads(done.stdout.strip().splitlines()[-1])


def bytes_per_row(small: dict[str, float], large: dict[str, float], rows: int) -> float:
    return (large["peak_mb"] - small["peak_mb"]) * 2**20 / rows


@pytest.mark.parametrize("file_format", ["csv", "parquet"])
def test_the_measured_peak_stays_under_the_estimate(tmp_path: Path, file_format: str) -> None:
    # Given 20-feature datasets of 20k and 80k rows
    contract, small = measure(tmp_path, 20_000, file_format)
    _, large = measure(tmp_path, 80_000, file_format)
    # Then training each peaks below its estimate, and each further row costs less than the estimate counts
    assert small["peak_mb"] <= training.estimate_memory_mb(contract, 20_000)
    assert large["peak_mb"] <= training.estimate_memory_mb(contract, 80_000)
    per_row = bytes_per_row(small, large, 60_000)
    assert 0 < per_row <= training._bytes_per_row(contract), f"{per_row:.0f} bytes a row"
    assert large["base_mb"] < training.BASE_MB
