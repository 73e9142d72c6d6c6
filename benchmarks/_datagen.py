"""Seeded synthetic datasets for `bench_validation.py`: a contract, the same rows as CSV, gzipped CSV and Parquet, and
the list of faults injected into them.

The table has the contract's 20 features (5 int, 12 float, 3 category) plus the classification target: 21 columns.
Rows are generated in fixed-size chunks, each from its own seeded generator, so the data depends only on
(rows, seed, faults) and memory stays bounded at 10 M rows. Every output is written to a temporary name and renamed,
so an interrupted run never leaves a half-written file that a later run would take from the cache.

Faults, a few hundred in all, one per cell, at seeded random rows (0-based data rows, header excluded):

* `nonnum`   text that is not a number (`abc`, `12a`, ...) in int or float columns       -> types
* `fraction` a fraction (`7.5`) in an int column                                          -> types
* `below`    a value under the column's `min`                                             -> ranges
* `above`    a value over the column's `max`                                              -> ranges
* `inf`      `inf` or `-inf` in a float column                                            -> ranges
* `category` a value outside a category column's `values`                                 -> categories
* `class`    a label outside the contract's `target_values`                               -> categories
* `empty`    an empty cell in a non-nullable column (any type, the target included)       -> nulls

Non-numbers go to a few columns only (int_0, float_0, float_1), and fractions to int_1 and int_2, as in a real
export where one or two columns are dirty; the other numeric columns stay numbers a CSV reader can type.

Parquet columns are typed (int64, float64, string), so a typed column cannot hold `nonnum` or `fraction` faults:
those are left out of the Parquet file (its cells keep their clean value) and of its expected findings. Empty
cells are Parquet nulls; out-of-range values and infinities are written as numbers.

Nullable float columns (float_9 .. float_11) also hold a background of empty cells (0.2 % of rows), under the
contract's `max_null_fraction` of 1 %, which must *not* be reported.
"""

from __future__ import annotations

import gzip
import json
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

VERSION = 2  # bump when the generated data changes, so cached files are not reused
CHUNK_ROWS = 500_000  # fixed: the data must not depend on how it is chunked
FORMATS = ("csv", "csv.gz", "parquet")
TEXT_FAULTS = frozenset({"nonnum", "fraction"})  # cannot be written into a typed (Parquet) column
CHECK_OF = {
    "nonnum": "types",
    "fraction": "types",
    "below": "ranges",
    "above": "ranges",
    "inf": "ranges",
    "category": "categories",
    "class": "categories",
    "empty": "nulls",
}
# Share of each kind in the injected faults (sums to 1).
MIX = {
    "nonnum": 0.12,
    "fraction": 0.10,
    "below": 0.17,
    "above": 0.13,
    "inf": 0.10,
    "category": 0.13,
    "class": 0.08,
    "empty": 0.17,
}
BACKGROUND_NULLS = 0.002
MAX_NULL_FRACTION = 0.01

TARGET = "label"
TARGET_VALUES = ("no", "yes")
# name -> (min, max) for int features
INTS: dict[str, tuple[int, int]] = {
    "int_0": (0, 120),
    "int_1": (0, 10_000),
    "int_2": (0, 1_000),
    "int_3": (-50, 50),
    "int_4": (1, 100_000),
}
# name -> (min, max, nullable, generator kind) for float features
FLOATS: dict[str, tuple[float | None, float | None, bool, str]] = {
    "float_0": (0.0, None, False, "lognormal"),
    "float_1": (0.0, 1.0, False, "unit"),
    "float_2": (None, None, False, "normal"),
    "float_3": (0.0, None, False, "lognormal"),
    "float_4": (-1000.0, 1000.0, False, "normal"),
    "float_5": (None, None, False, "normal"),
    "float_6": (0.0, 1.0, False, "unit"),
    "float_7": (0.0, None, False, "lognormal"),
    "float_8": (None, 5000.0, False, "normal"),
    "float_9": (0.0, None, True, "lognormal"),
    "float_10": (None, None, True, "normal"),
    "float_11": (0.0, 1.0, True, "unit"),
}
CATEGORIES: dict[str, tuple[str, ...]] = {
    "cat_0": ("basic", "plus", "pro", "team"),
    "cat_1": ("north", "south", "east", "west", "central", "remote"),
    "cat_2": tuple(f"s{i:02d}" for i in range(24)),
}
COLUMNS = [*INTS, *FLOATS, *CATEGORIES, TARGET]

NONNUM_COLUMNS = ("int_0", "float_0", "float_1")
FRACTION_COLUMNS = ("int_1", "int_2")
NOT_NUMBERS = ("abc", "12a", "#VALUE!", "1.2.3", "?", "n.a.", "x")
UNKNOWN_CATEGORIES = ("gold", "PRO", "other", "unknown")
UNKNOWN_CLASSES = ("maybe", "Yes", "2")


@dataclass(frozen=True)
class Fault:
    kind: str
    check: str
    column: str
    row: int
    text: str  # as written into the CSV ("" for an empty cell)

    @property
    def in_parquet(self) -> bool:
        return self.kind not in TEXT_FAULTS


@dataclass(frozen=True)
class Dataset:
    rows: int
    seed: int
    contract: Path
    files: dict[str, Path]  # format -> path
    faults: list[Fault]

    def expected(self, fmt: str) -> list[Fault]:
        """The faults a validator must find in the file of format `fmt`."""
        return [f for f in self.faults if fmt != "parquet" or f.in_parquet]


def contract_yaml() -> str:
    """The dataset contract, as YAML."""
    lines = [
        "# Synthetic contract of benchmarks/bench_validation.py: 20 features and a classification target.",
        "name: bench-validation",
        "task: classification",
        f"target: {TARGET}",
        f"target_values: {json.dumps(list(TARGET_VALUES))}",  # quoted: YAML 1.1 reads a bare `no` as false
        f"quality: {{min_rows: 100, max_null_fraction: {MAX_NULL_FRACTION}}}",
        "features:",
    ]
    for name, (low, high) in INTS.items():
        lines.append(f"  - {{name: {name}, type: int, min: {low}, max: {high}}}")
    for name, (flow, fhigh, nullable, _) in FLOATS.items():
        parts = [f"name: {name}", "type: float"]
        if flow is not None:
            parts.append(f"min: {flow:g}")
        if fhigh is not None:
            parts.append(f"max: {fhigh:g}")
        if nullable:
            parts.append("nullable: true")
        lines.append(f"  - {{{', '.join(parts)}}}")
    for name, values in CATEGORIES.items():
        lines.append(f"  - {{name: {name}, type: category, values: {json.dumps(list(values))}}}")
    return "\n".join(lines) + "\n"


def plan_faults(rows: int, seed: int, count: int) -> list[Fault]:
    """`count` faults at distinct cells, sorted by (column, row)."""
    rng = np.random.default_rng([seed, 0xFA17])
    eligible: dict[str, list[str]] = {
        "nonnum": list(NONNUM_COLUMNS),
        "fraction": list(FRACTION_COLUMNS),
        "below": [*INTS, *(n for n, spec in FLOATS.items() if spec[0] is not None)],
        "above": [*INTS, *(n for n, spec in FLOATS.items() if spec[1] is not None)],
        "inf": list(FLOATS),
        "category": list(CATEGORIES),
        "class": [TARGET],
        "empty": [*INTS, *(n for n, spec in FLOATS.items() if not spec[2]), *CATEGORIES, TARGET],
    }
    kinds = list(MIX)
    counts = np.floor(np.array([MIX[k] for k in kinds]) * count).astype(int)
    counts[kinds.index("empty")] += count - int(counts.sum())
    used: set[tuple[str, int]] = set()
    faults: list[Fault] = []
    for kind, n in zip(kinds, counts, strict=True):
        for _ in range(int(n)):
            column = str(rng.choice(eligible[kind]))
            row = int(rng.integers(0, rows))
            while (column, row) in used:
                row = int(rng.integers(0, rows))
            used.add((column, row))
            faults.append(Fault(kind, CHECK_OF[kind], column, row, _fault_text(kind, column, rng)))
    return sorted(faults, key=lambda f: (COLUMNS.index(f.column), f.row))


def _fault_text(kind: str, column: str, rng: np.random.Generator) -> str:
    if kind == "nonnum":
        return str(rng.choice(NOT_NUMBERS))
    if kind == "fraction":
        low, high = INTS[column]
        return f"{int(rng.integers(low, high))}.5"
    if kind == "inf":
        return str(rng.choice(["inf", "-inf"]))
    if kind == "category":
        return str(rng.choice(UNKNOWN_CATEGORIES))
    if kind == "class":
        return str(rng.choice(UNKNOWN_CLASSES))
    if kind == "empty":
        return ""
    if column in INTS:
        low, high = INTS[column]
        return str(low - int(rng.integers(1, 100)) if kind == "below" else high + int(rng.integers(1, 100)))
    flow, fhigh, _, _ = FLOATS[column]
    if kind == "below":
        assert flow is not None
        return f"{flow - float(rng.uniform(0.01, 100)):.2f}"
    assert fhigh is not None
    return f"{fhigh + float(rng.uniform(0.01, 100)):.2f}"


def _floats(rng: np.random.Generator, kind: str, n: int, low: float | None, high: float | None) -> np.ndarray:
    if kind == "lognormal":
        values = np.round(rng.lognormal(4.0, 1.2, n), 2)
    elif kind == "unit":
        values = np.round(rng.random(n), 4)
    else:
        values = np.round(rng.normal(0.0, 300.0, n), 2)
    return np.clip(values, low, high) if low is not None or high is not None else values


def _chunk(rows: int, seed: int, index: int) -> dict[str, pa.Array]:
    """Clean typed columns of chunk `index` (nullable floats already hold their background nulls)."""
    start = index * CHUNK_ROWS
    n = min(CHUNK_ROWS, rows - start)
    rng = np.random.default_rng([seed, index])
    columns: dict[str, pa.Array] = {}
    for name, (ilow, ihigh) in INTS.items():
        columns[name] = pa.array(rng.integers(ilow, ihigh + 1, n, dtype=np.int64))
    for name, (low, high, nullable, kind) in FLOATS.items():
        values = _floats(rng, kind, n, low, high)
        mask = rng.random(n) < BACKGROUND_NULLS if nullable else None
        columns[name] = pa.array(values, mask=mask)
    for name, labels in [*CATEGORIES.items(), (TARGET, TARGET_VALUES)]:
        codes = rng.integers(0, len(labels), n, dtype=np.int32)
        columns[name] = pc.take(pa.array(labels, pa.string()), pa.array(codes))
    return columns


def _inject(array: pa.Array, start: int, faults: list[Fault], *, typed: bool) -> pa.Array:
    """`array` with the cells of `faults` (rows of the whole file) replaced: as text, or typed for Parquet."""
    if not faults:
        return array
    if not typed and not pa.types.is_string(array.type):
        array = pc.cast(array, pa.string())
    mask = np.zeros(len(array), dtype=bool)
    ordered = sorted(faults, key=lambda f: f.row)
    mask[[f.row - start for f in ordered]] = True
    values: list[Any] = []
    for fault in ordered:
        if fault.text == "":
            values.append(None)
        elif typed and pa.types.is_integer(array.type):
            values.append(int(fault.text))
        elif typed and pa.types.is_floating(array.type):
            values.append(float(fault.text))
        else:
            values.append(fault.text)
    return pc.replace_with_mask(array, pa.array(mask), pa.array(values, array.type))


def _stem(rows: int, seed: int, faults: int) -> str:
    return f"bench-v{VERSION}-{rows}r-s{seed}-f{faults}"


def dataset(workdir: Path, rows: int, seed: int, faults: int, formats: list[str]) -> tuple[Dataset, float]:
    """The dataset, generating the files of `formats` that are not cached yet; also returns the seconds spent."""
    import time

    started = time.perf_counter()
    workdir.mkdir(parents=True, exist_ok=True)
    stem = _stem(rows, seed, faults)
    files = {fmt: workdir / f"{stem}.{fmt}" for fmt in FORMATS}
    contract = workdir / f"{stem}.contract.yaml"
    plan = workdir / f"{stem}.faults.json"
    if not plan.exists():
        planned = plan_faults(rows, seed, faults)
        _atomic_text(plan, json.dumps([asdict(f) for f in planned], indent=0))
    fault_list = [Fault(**item) for item in json.loads(plan.read_text())]
    if not contract.exists():
        _atomic_text(contract, contract_yaml())
    missing = [fmt for fmt in formats if not files[fmt].exists()]
    if missing:
        _write(rows, seed, fault_list, {fmt: files[fmt] for fmt in missing})
    return Dataset(rows, seed, contract, {fmt: files[fmt] for fmt in formats}, fault_list), (
        time.perf_counter() - started
    )


def _atomic_text(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    os.replace(partial, path)


def _write(rows: int, seed: int, faults: list[Fault], targets: dict[str, Path]) -> None:  # noqa: PLR0912
    partial = {fmt: path.with_name(path.name + ".partial") for fmt, path in targets.items()}
    header = (",".join(COLUMNS) + "\n").encode()
    plain = open(partial["csv"], "wb") if "csv" in partial else None  # noqa: SIM115 - closed below
    # mtime=0: the same data gives the same bytes (and sha256) on every run.
    packed = gzip.GzipFile(partial["csv.gz"], "wb", compresslevel=6, mtime=0) if "csv.gz" in partial else None
    parquet: pq.ParquetWriter | None = None
    by_column: dict[str, list[Fault]] = {}
    for fault in faults:
        by_column.setdefault(fault.column, []).append(fault)
    options = pacsv.WriteOptions(include_header=False, quoting_style="none")
    # zlib releases the GIL: the gzip stream is compressed on a thread while the next chunk is generated.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending: Future[Any] | None = None
        try:
            for sink in (plain, packed):
                if sink is not None:
                    sink.write(header)
            for index in range((rows + CHUNK_ROWS - 1) // CHUNK_ROWS):
                start = index * CHUNK_ROWS
                clean = _chunk(rows, seed, index)
                end = start + len(clean[TARGET])
                here = {name: [f for f in by_column.get(name, []) if start <= f.row < end] for name in COLUMNS}
                if plain is not None or packed is not None:
                    text = pa.table({name: _inject(clean[name], start, here[name], typed=False) for name in COLUMNS})
                    buffer = pa.BufferOutputStream()
                    pacsv.write_csv(text, buffer, options)
                    body = buffer.getvalue().to_pybytes()
                    if plain is not None:
                        plain.write(body)
                    if packed is not None:
                        if pending is not None:
                            pending.result()
                        pending = pool.submit(packed.write, body)
                if "parquet" in partial:
                    typed = pa.table(
                        {
                            name: _inject(clean[name], start, [f for f in here[name] if f.in_parquet], typed=True)
                            for name in COLUMNS
                        }
                    )
                    if parquet is None:
                        parquet = pq.ParquetWriter(partial["parquet"], typed.schema)
                    parquet.write_table(typed)
            if pending is not None:
                pending.result()
        finally:
            for closable in (plain, packed, parquet):
                if closable is not None:
                    closable.close()
    for fmt, path in targets.items():
        os.replace(partial[fmt], path)
