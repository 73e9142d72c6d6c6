"""Throughput of contract validation on synthetic CSVs, against a naive row-by-row Python implementation.

Run: PYTHONPATH=layers/core python benchmarks/bench_validation.py [--sizes 10000,100000,1000000]

Each file has a handful of injected faults (a non-number, a fraction in an int column, an out-of-range value, an
`inf`, an unknown category, an unknown class, an empty cell) so the issue paths run too. Both implementations must
agree on the (check, column, rows) they report, or the benchmark fails.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import time
from collections import defaultdict
from collections.abc import Callable

import numpy as np
import pandas as pd

from loopml_core.contract import DatasetContract, FeatureType, Task, load_contract
from loopml_core.validation import validate_csv

CONTRACT = load_contract(
    """
name: bench
task: classification
target: label
target_values: ["a", "b", "c"]
quality: {min_rows: 100, max_null_fraction: 0.01}
features:
  - {name: age, type: int, min: 0, max: 120}
  - {name: visits, type: int, min: 0}
  - {name: income, type: float, min: 0}
  - {name: score, type: float, nullable: true}
  - {name: plan, type: category, values: [basic, pro, team, enterprise]}
  - {name: region, type: category, values: [eu, us, apac, latam]}
"""
)
BASELINE_MAX_ROWS = 100_000
REPEAT = 3  # best of: the figures are for a quiet machine, not for whatever else is running
Finding = tuple[str, str | None, tuple[int, ...]]


def synthetic_csv(n: int, seed: int = 0, *, faulty: bool = True) -> tuple[bytes, set[Finding]]:
    """A CSV of `n` rows and the findings its injected faults must produce (none when not `faulty`)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 90, n).astype(str),
            "visits": rng.integers(0, 500, n).astype(str),
            "income": np.round(rng.lognormal(10.5, 0.5, n), 2).astype(str),
            "score": np.round(rng.normal(size=n), 4).astype(str),
            "plan": rng.choice(["basic", "pro", "team", "enterprise"], n),
            "region": rng.choice(["eu", "us", "apac", "latam"], n),
            "label": rng.choice(["a", "b", "c"], n),
        }
    )
    faults = {
        ("types", "age"): (n // 7, "abc"),
        ("types", "visits"): (n // 5, "2.5"),
        ("ranges", "income"): (n // 3, "-10"),
        ("ranges", "score"): (n // 2, "inf"),
        ("categories", "plan"): (n - 2, "gold"),
        ("categories", "label"): (n // 11, "z"),
        ("nulls", "region"): (n - 1, ""),
    }
    if not faulty:
        return frame.to_csv(index=False).encode(), set()
    for (_, column), (row, value) in faults.items():
        frame.loc[row, column] = value
    expected: set[Finding] = {(check, column, (row,)) for (check, column), (row, _) in faults.items()}
    return frame.to_csv(index=False).encode(), expected


def vectorized(body: bytes) -> set[Finding]:
    """The findings of `validate_csv`, in the baseline's terms."""
    report = validate_csv(CONTRACT, body, max_issue_rows=1_000)
    return {(i.check, i.column, tuple(i.rows)) for i in report.issues}


def naive(body: bytes) -> set[Finding]:  # noqa: PLR0912 - a straightforward loop is the point of the baseline
    """The same checks, one cell at a time: what a first implementation would write."""
    contract: DatasetContract = CONTRACT
    reader = csv.reader(io.StringIO(body.decode("utf-8")))
    header = [h.strip() for h in next(reader)]
    index = {name: header.index(name) for name in [*contract.feature_names, contract.target]}
    found: dict[tuple[str, str | None], list[int]] = defaultdict(list)
    nulls: dict[str, list[int]] = defaultdict(list)
    classes: set[str] = set()
    n = 0
    for row_number, row in enumerate(reader):
        n += 1
        for feature in contract.features:
            cell = row[index[feature.name]].strip()
            if not cell:
                nulls[feature.name].append(row_number)
                continue
            if feature.type is FeatureType.CATEGORY:
                if cell not in (feature.values or ()):
                    found["categories", feature.name].append(row_number)
                continue
            try:
                value = float(cell)
            except ValueError:
                found["types", feature.name].append(row_number)
                continue
            if not math.isfinite(value):
                found["ranges", feature.name].append(row_number)
            elif feature.type is FeatureType.INT and not value.is_integer():
                found["types", feature.name].append(row_number)
            elif (feature.min is not None and value < feature.min) or (feature.max is not None and value > feature.max):
                found["ranges", feature.name].append(row_number)
        label = row[index[contract.target]].strip()
        if not label:
            nulls[contract.target].append(row_number)
        elif contract.target_values is not None and label not in contract.target_values:
            found["categories", contract.target].append(row_number)
        else:
            classes.add(label)
    for feature in contract.features:
        limit = contract.quality.max_null_fraction if feature.nullable else 0.0
        if nulls[feature.name] and len(nulls[feature.name]) / max(n, 1) > limit:
            found["nulls", feature.name] = nulls[feature.name]
    if nulls[contract.target]:
        found["nulls", contract.target] = nulls[contract.target]
    findings = {(check, column, tuple(rows)) for (check, column), rows in found.items()}
    if n < contract.quality.min_rows:
        findings.add(("quality", None, ()))
    if contract.task is Task.CLASSIFICATION and len(classes) == 1:
        findings.add(("quality", contract.target, ()))
    return findings


def timed(run: Callable[[bytes], set[Finding]], body: bytes, repeat: int) -> tuple[float, set[Finding]]:
    """Best wall time of `repeat` runs, and the findings."""
    best, result = math.inf, set[Finding]()
    for _ in range(repeat):
        started = time.perf_counter()
        result = run(body)
        best = min(best, time.perf_counter() - started)
    return best, result


def row(n: int, mb: float, name: str, wall: float, speedup: str = "") -> None:
    """Print one result line."""
    print(f"{n:>10,} {mb:>6.1f} {name:<24} {wall:>8.3f} {n / wall:>12,.0f} {speedup:>9}")


def main() -> None:
    """Generate, validate, compare and print one line per size and implementation."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    sizes = [int(s) for s in parser.parse_args().sizes.split(",")]
    started = time.perf_counter()
    print(f"{'rows':>10} {'MB':>6} {'implementation':<24} {'wall s':>8} {'rows/s':>12} {'speed-up':>9}")
    for n in sizes:
        body, expected = synthetic_csv(n)
        mb = len(body) / 1e6
        wall, found = timed(vectorized, body, REPEAT)
        assert found == expected, f"vectorized at {n}: {found ^ expected}"
        if n <= BASELINE_MAX_ROWS:
            naive_wall, naive_found = timed(naive, body, REPEAT)
            assert naive_found == expected, f"naive at {n}: {naive_found ^ expected}"
            row(n, mb, "validate_csv", wall, f"{naive_wall / wall:.1f}x")
            row(n, mb, "naive row loop", naive_wall)
        else:
            row(n, mb, "validate_csv", wall)
        # Without faults every numeric column is typed by pandas' C parser and never goes through text.
        clean, _ = synthetic_csv(n, faulty=False)
        clean_wall, clean_found = timed(vectorized, clean, REPEAT)
        assert not clean_found, f"clean file at {n}: {clean_found}"
        row(n, len(clean) / 1e6, "validate_csv, no faults", clean_wall)
    print(f"total benchmark time {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    main()
