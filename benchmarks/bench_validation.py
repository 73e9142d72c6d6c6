"""Upload validation: `loopml validate` against what a user would run instead, pandas alone and pandera.

Run (`make bench` runs it with the defaults):

    .venv/bin/python benchmarks/bench_validation.py [--rows 2000000] [--formats csv,csv.gz,parquet]
        [--skip-pandera] [--workdir .build/bench-validation] [--repeat 1] [--seed 0] [--faults 300]

Data (benchmarks/_datagen.py): a seeded contract of 20 features (5 int with min/max, 12 float, some bounded and
three nullable, 3 category) and a classification target, so 21 columns; `--rows` rows (default 2 M; try
`--rows 10000000` for the memory bound) with a few hundred injected faults (non-numbers, fractions in int columns,
out-of-range values, infinities, unknown categories and classes, empty cells in non-nullable columns). The same
rows are written as CSV, gzipped CSV (level 6) and Parquet (typed columns: the faults a typed column cannot hold
are left out of it). Files are cached in `--workdir` keyed by rows, seed and fault count; reruns skip generation.

Measured, for each format and each tool in a fresh subprocess (so imports, interpreter start and peak memory are
the tool's own; peak RSS is the child's `ru_maxrss` from `os.wait4` on its pid, spawned from a bare launcher so the
parent's memory does not leak into it; `cpu s` is the child's user + system time, steadier than wall on a busy box):

1. `loopml validate FILE --contract CONTRACT --json`: the whole command, end to end. rows/s = rows / the process'
   wall time; the seconds it reports itself are shown too. Its findings must match the injected faults exactly
   (per check and column, the number of rows at fault; every example row it names must be an injected one, on
   line row + 2 of the CSV), or this script exits 1 after printing everything. `--max-issue-rows` is raised above
   its default of 20 only when a (check, column) holds more faults, so that every faulty row is compared.
2. `pandas.read_csv` alone (C engine, default dtypes; `read_parquet` for Parquet): the floor of any pandas-based
   validator, which has to read the file before checking anything.
3. pandera, the library a user would pick to express the same rules: `DataFrameSchema` with one `Column` per
   contract column (ge/le/isin, finite, integral for int, null fraction for nullable floats, strict columns, a
   minimum row count), validated `lazy=True` so it collects every failure like LoopML does, on the frame from
   step 2's reader. Read and validate are timed separately.

Why these baselines: before LoopML, a user checks an upload with pandas (reading is the unavoidable part of that)
and, for declared rules, pandera. The previous baseline here, a row-by-row Python loop, is not what anyone would
pick. The ratio checks/pandera divides pandera's validate-only time by LoopML's *whole* end-to-end time, which
includes interpreter start, parsing and hashing: a conservative comparison.

Goals from the issue, printed as PASS/MISS (a benchmark never fails on timings, only on wrong findings):
>= 2 M rows/s end to end on the CSV, peak RSS <= 300 MB whatever the size, checks >= 3x pandera.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _datagen, when imported from elsewhere

import _datagen

ROOT = Path(__file__).resolve().parent.parent
GOAL_ROWS_PER_SECOND = 2_000_000
GOAL_PEAK_MB = 300
GOAL_PANDERA_RATIO = 3.0


# --- measuring a child process ---------------------------------------------------------------------------------


@dataclass
class Run:
    tool: str
    fmt: str
    wall: float  # seconds, from spawn to reaping
    peak_mb: float  # the child's own ru_maxrss
    cpu: float  # the child's user + system seconds (all its threads): less sensitive than wall to a busy machine
    code: int
    stdout: str
    stderr: str
    data: dict[str, Any] = field(default_factory=dict)  # the child's JSON output, when it printed one

    @property
    def failed(self) -> bool:
        return not self.data


# Runs the measured command and reports its wall time, peak RSS and exit status. A child's ru_maxrss counts the
# memory of the process it was exec'ed from (Linux keeps the old image's high-water mark at exec, and subprocess
# spawns with vfork, sharing the parent's): spawned straight from this script, which holds the generated data, every
# child would show this script's peak. This launcher is a bare interpreter (-S, ~10 MB), below any measured tool.
# os.wait4 on the child's pid gives that child's own peak, unlike RUSAGE_CHILDREN, a maximum over all children.
LAUNCHER = """
import os, sys, time
started = time.perf_counter()
pid = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - started
with open(sys.argv[1], "w") as out:
    cpu = usage.ru_utime + usage.ru_stime
    out.write(f"{wall!r} {cpu!r} {usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}")
"""


def spawn(command: list[str]) -> tuple[float, float, float, int, str, str]:
    """Run `command` to completion: wall seconds, CPU seconds, peak RSS in MB, exit code, stdout and stderr."""
    with tempfile.TemporaryDirectory(prefix="bench-validation-") as scratch:
        result = Path(scratch) / "result"
        out, err = Path(scratch) / "out", Path(scratch) / "err"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            launcher = [sys.executable, "-S", "-c", LAUNCHER, str(result), *command]
            subprocess.run(launcher, stdout=stdout, stderr=stderr, cwd=ROOT, check=True)
        wall, cpu, maxrss, code = result.read_text().split()
        # ru_maxrss is in KiB on Linux, in bytes on macOS.
        peak = int(maxrss) / (1 << 20) if sys.platform == "darwin" else int(maxrss) / 1024
        printed, complained = out.read_text(errors="replace"), err.read_text(errors="replace")
        return float(wall), float(cpu), peak, int(code), printed, complained


def measure(tool: str, fmt: str, command: list[str], repeat: int, ok_codes: tuple[int, ...] = (0,)) -> Run:
    """The fastest of `repeat` runs of `command` (its peak memory is that run's)."""
    best: Run | None = None
    for _ in range(repeat):
        wall, cpu, peak, code, stdout, stderr = spawn(command)
        data: dict[str, Any] = {}
        if code in ok_codes:
            try:
                parsed = json.loads(stdout)
                data = parsed if isinstance(parsed, dict) else {}
            except json.JSONDecodeError:
                data = {}
        run = Run(tool, fmt, wall, peak, cpu, code, stdout, stderr, data)
        if best is None or (run.failed, run.wall) < (best.failed, best.wall):
            best = run
    assert best is not None
    return best


def loopml_command() -> list[str]:
    script = Path(sys.executable).parent / "loopml"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from infra.cli.main import main; main()"]


def child_command(mode: str, fmt: str, path: Path, contract: Path) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--child", mode, fmt, str(path), str(contract)]


# --- the children: pandas alone, pandera -----------------------------------------------------------------------


def _read_frame(fmt: str, path: str) -> Any:
    import pandas as pd

    if fmt == "parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path)  # C engine, default dtypes; compression inferred from the .gz suffix


def pandera_schema(contract: dict[str, Any]) -> Any:
    """The contract's rules, written as a pandera user would write them."""
    import numpy as np
    import pandera.pandas as pa

    limit = float(contract.get("quality", {}).get("max_null_fraction", 0.0))
    min_rows = int(contract.get("quality", {}).get("min_rows", 100))
    finite = pa.Check(np.isfinite, name="finite")
    integral = pa.Check(lambda s: s == np.floor(s), name="integral")
    columns: dict[str, Any] = {}
    for feature in contract["features"]:
        checks: list[Any] = []
        if feature["type"] == "category":
            columns[feature["name"]] = pa.Column(str, checks=[pa.Check.isin(feature["values"])], nullable=False)
            continue
        if feature.get("min") is not None:
            checks.append(pa.Check.ge(feature["min"]))
        if feature.get("max") is not None:
            checks.append(pa.Check.le(feature["max"]))
        checks.append(finite)
        if feature["type"] == "int":
            checks.append(integral)  # int columns accept 3.0: coerce to float and check the value is whole
        nullable = bool(feature.get("nullable", False))
        if nullable:
            checks.append(pa.Check(lambda s: s.isna().mean() <= limit, ignore_na=False, name="max_null_fraction"))
        columns[feature["name"]] = pa.Column("float64", checks=checks, coerce=True, nullable=nullable)
    if contract.get("target_values"):
        columns[contract["target"]] = pa.Column(str, checks=[pa.Check.isin(contract["target_values"])])
    else:
        columns[contract["target"]] = pa.Column("float64", checks=[finite], coerce=True)
    return pa.DataFrameSchema(
        columns,
        strict=True,  # LoopML rejects columns the contract does not declare
        checks=[pa.Check(lambda frame: len(frame) >= min_rows, name="min_rows")],
    )


def lambda_path(fmt: str, path: str, contract_path: str) -> dict[str, Any]:
    """What `validate_upload` runs for an S3 event: `Ingestor.ingest` with the registry, pipeline and object store
    behind their interfaces. The store streams the object from disk (S3's GET body is a stream too), and the
    registry and pipeline are the in-memory fakes: the measurement is LoopML's code path, not moto's."""
    import shutil
    from typing import BinaryIO

    from loopml_core.adapters.object_store import InMemoryObjectStore, StoredObject
    from loopml_core.adapters.pipeline import InMemoryPipelineRunner
    from loopml_core.adapters.table import InMemoryTable
    from loopml_core.contract import load_contract
    from loopml_core.logic.ingest import Ingestor, Upload
    from loopml_core.registry import Registry

    class DiskStore(InMemoryObjectStore):
        """Objects under incoming/ are files on disk, read as streams; copies are links (S3 copies server-side)."""

        def __init__(self, root: Path, files: dict[str, Path]) -> None:
            super().__init__()
            self.root, self.files = root, files

        def size(self, bucket: str, key: str, version_id: str | None = None) -> int:
            return self.files[key].stat().st_size if key in self.files else super().size(bucket, key, version_id)

        def open(self, bucket: str, key: str, version_id: str | None = None) -> BinaryIO:
            return self.files[key].open("rb") if key in self.files else super().open(bucket, key, version_id)

        def open_random_access(self, bucket: str, key: str, version_id: str | None = None) -> BinaryIO:
            return self.open(bucket, key, version_id)

        def copy(
            self, bucket: str, key: str, dest_bucket: str, dest_key: str, version_id: str | None = None
        ) -> StoredObject:
            target = self.root / dest_key.replace("/", "_")
            target.unlink(missing_ok=True)
            try:
                os.link(self.files[key], target)
            except OSError:
                shutil.copyfile(self.files[key], target)
            self.files[dest_key] = target
            return StoredObject(dest_bucket, dest_key, "1")

        def tag(self, bucket: str, key: str, tags: dict[str, str], version_id: str | None = None) -> None:
            self._tags[(bucket, key, "1")] = dict(tags)

    contract = load_contract(Path(contract_path).read_text())
    registry = Registry(InMemoryTable(), actor="validate_upload")
    registry.declare_dataset(contract)
    key = f"incoming/{contract.name}/{Path(path).name}"
    with tempfile.TemporaryDirectory(prefix="bench-lambda-") as scratch:
        store = DiskStore(Path(scratch), {key: Path(path)})
        ingestor = Ingestor(store, registry, InMemoryPipelineRunner("arn:aws:states:us-east-1:1:stateMachine:x"))
        started = time.perf_counter()
        outcome = ingestor.ingest(Upload("bucket", key, "1"))
        seconds = time.perf_counter() - started
    return {"rows": outcome.rows, "status": str(outcome.status), "seconds": seconds}


def child(argv: list[str]) -> None:
    """`--child read|pandera|lambda FORMAT FILE CONTRACT`: one measurement, printed as a JSON line."""
    mode, fmt, path, contract_path = argv
    if mode == "lambda":
        print(json.dumps(lambda_path(fmt, path, contract_path)))
        return
    if mode == "read":
        started = time.perf_counter()
        frame = _read_frame(fmt, path)
        print(json.dumps({"rows": len(frame), "seconds": time.perf_counter() - started}))
        return
    import warnings

    import yaml

    warnings.simplefilter("ignore")  # pandera's import-time typeguard notice
    import pandas as pd
    from pandera.errors import SchemaErrors

    schema = pandera_schema(yaml.safe_load(Path(contract_path).read_text()))
    started = time.perf_counter()
    frame = _read_frame(fmt, path)
    read = time.perf_counter() - started
    started = time.perf_counter()
    cells: dict[str, set[int]] = defaultdict(set)
    errors: list[dict[str, str]] = []
    try:
        schema.validate(frame, lazy=True)
    except SchemaErrors as failure:
        validate = time.perf_counter() - started
        for case in failure.failure_cases.itertuples(index=False):
            index = case.index
            if index is None or pd.isna(index):  # a check that raised, or one about the whole column or frame
                errors.append({"column": str(case.column), "check": str(case.check), "case": str(case.failure_case)})
            else:
                cells[str(case.column)].add(int(index))
    else:
        validate = time.perf_counter() - started
    print(
        json.dumps(
            {
                "rows": len(frame),
                "read_seconds": read,
                "validate_seconds": validate,
                "cells": {column: sorted(rows) for column, rows in cells.items()},
                "errors": errors,
            }
        )
    )


# --- checking LoopML's findings --------------------------------------------------------------------------------


def verify_loopml(report: dict[str, Any], expected: list[_datagen.Fault], rows: int, fmt: str) -> list[str]:
    """Disagreements between LoopML's report and the injected faults, one line each (empty when it is exact).

    In the CSVs every record is one line after a one-line header, so data row r is on line r + 2.
    """
    problems: list[str] = []
    if report.get("rows") != rows:
        problems.append(f"rows: reported {report.get('rows')}, the file has {rows}")
    if report.get("ok") is not (not expected):
        problems.append(f"ok: reported {report.get('ok')}, expected {not expected}")
    injected: dict[tuple[str, str | None], set[int]] = defaultdict(set)
    for fault in expected:
        injected[fault.check, fault.column].add(fault.row)
    counted: Counter[tuple[str, str | None]] = Counter()
    named: dict[tuple[str, str | None], set[int]] = defaultdict(set)
    capped: set[tuple[str, str | None]] = set()
    for issue in report.get("issues", []):
        key = (str(issue.get("check")), issue.get("column"))
        counted[key] += int(issue.get("row_count", 0))
        shown = [int(r) for r in issue.get("rows", [])]
        named[key].update(shown)
        lines = [int(n) for n in issue.get("lines", [])]
        if fmt != "parquet" and lines != [r + 2 for r in shown]:
            problems.append(f"{key[0]}[{key[1]}]: lines {lines[:5]} are not rows + 2 for rows {shown[:5]}")
        if len(shown) < int(issue.get("row_count", 0)):
            capped.add(key)
        if not issue.get("row_count"):
            problems.append(f"{key[0]}[{key[1]}]: unexpected issue without rows: {issue.get('message')}")
    for key in sorted(set(injected) | set(counted), key=lambda k: (k[0], str(k[1]))):
        check, column = key
        want, got = len(injected[key]), counted[key]
        extra = sorted(named[key] - injected[key])
        # Examples are capped: an injected row it does not name is only known to be missed when nothing was capped.
        missing = sorted(injected[key] - named[key]) if key not in capped else []
        if want == got and not extra and not missing:
            continue
        line = f"{check}[{column}]: injected {want} rows, LoopML counted {got}"
        if extra:
            line += f"; rows named but not injected: {[(check, column, r) for r in extra[:20]]}"
        if missing:
            line += f"; injected rows not named: {[(check, column, r) for r in missing[:20]]}"
        elif key in capped and want != got:
            line += f" (examples capped; injected rows: {[(check, column, r) for r in sorted(injected[key])[:20]]})"
        problems.append(line)
    return problems


def report_notes(report: dict[str, Any], path: Path, fmt: str) -> list[str]:
    """Fields of the report that do not describe the file (informational: they do not fail the benchmark)."""
    lines = []
    missing = [key for key in ("ok", "rows", "sha256", "seconds", "format", "issues") if key not in report]
    if missing:
        lines.append(f"fields missing from the JSON: {', '.join(missing)}")
    if report.get("format") not in (None, fmt):
        lines.append(f"format is {report.get('format')!r}, the file is {fmt}")
    size = path.stat().st_size
    if "bytes" in report and report["bytes"] != size:
        lines.append(f"bytes is {report['bytes']}, the file has {size}")
    digest = report.get("sha256")
    if digest and digest != file_sha256(path):
        lines.append("sha256 is not the sha256 of the file's bytes")
    return lines


def compare_pandera(data: dict[str, Any], expected: list[_datagen.Fault]) -> str:
    """What pandera found of the injected faults: informational, its rules are not LoopML's."""
    found = {(column, int(row)) for column, rows in data.get("cells", {}).items() for row in rows}
    injected = {(f.column, f.row) for f in expected}
    missed = sorted(injected - found, key=lambda cell: (_datagen.COLUMNS.index(cell[0]), cell[1]))
    extra = sorted(found - injected)
    line = f"found {len(injected & found)} of {len(injected)} injected faulty cells, {len(extra)} other cells"
    if missed:
        kinds = Counter(f.kind for f in expected if (f.column, f.row) in set(missed))
        columns = sorted({c for c, _ in missed}, key=_datagen.COLUMNS.index)
        line += f"; missed {len(missed)} ({', '.join(f'{k} {n}' for k, n in kinds.items())}) in {', '.join(columns)}"
    raised = {(e["column"], e["check"]) for e in data.get("errors", []) if "Error(" in e["case"]}
    if raised:
        where = ", ".join(sorted({column for column, _ in raised}, key=_datagen.COLUMNS.index))
        line += f"; {len(raised)} checks raised TypeError on text columns ({where}) instead of running"
    return line


# --- report ----------------------------------------------------------------------------------------------------


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


HEADER = (
    f"{'format':<8} {'tool':<20} {'rows':>11} {'MB':>7} {'wall s':>7} {'rows/s':>11} {'cpu s':>6} "
    f"{'own seconds':>22} {'peak MB':>7}  note"
)


def row(run: Run, rows: int, mb: float, inner: str, note: str = "") -> None:
    """One line of the table; rows/s is over the process' wall time."""
    rate = f"{rows / run.wall:>11,.0f}" if run.wall > 0 else f"{'-':>11}"
    print(
        f"{run.fmt:<8} {run.tool:<20} {rows:>11,} {mb:>7.1f} {run.wall:>7.2f} {rate} {run.cpu:>6.2f} "
        f"{inner:>22} {run.peak_mb:>7.0f}  {note}"
    )


def main() -> None:  # noqa: PLR0912, PLR0915 - one straight-line report
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000, help="data rows per file (default 2000000)")
    parser.add_argument("--formats", default="csv,csv.gz,parquet", help="comma-separated: csv, csv.gz, parquet")
    parser.add_argument("--skip-pandera", action="store_true", help="only LoopML and pandas' reader")
    parser.add_argument("--workdir", type=Path, default=ROOT / ".build" / "bench-validation", help="file cache")
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement; the fastest is shown")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--faults", type=int, default=300, help="faults injected (default 300)")
    args = parser.parse_args()
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    unknown = [f for f in formats if f not in _datagen.FORMATS]
    if unknown:
        parser.error(f"unknown formats {unknown}; choose from {', '.join(_datagen.FORMATS)}")

    started = time.perf_counter()
    data, generated = _datagen.dataset(args.workdir, args.rows, args.seed, args.faults, formats)
    kinds = Counter(f.kind for f in data.faults)
    print(
        f"data: {args.rows:,} rows x 21 columns (20 features: 5 int, 12 float, 3 category; plus the target), "
        f"seed {args.seed}, in {args.workdir}"
    )
    print(
        f"faults: {len(data.faults)} injected ({', '.join(f'{k} {n}' for k, n in kinds.items())}); Parquet holds "
        f"{len(data.expected('parquet'))} (typed columns cannot hold non-numbers or fractions)"
    )
    print(f"files ready in {generated:.1f}s (generated or taken from the cache); contract {data.contract}")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"machine: {os.cpu_count()} cores, load average {load}; each measurement is a fresh process, files are in "
        "the page cache"
    )
    floor_wall, _, floor_peak, _, _, _ = spawn([sys.executable, "-c", "import pandas, pyarrow"])
    print(f"floor: `python -c 'import pandas, pyarrow'` takes {floor_wall:.2f}s and {floor_peak:.0f} MB peak RSS")
    if not args.skip_pandera:
        print(
            "pandera: numbers as Column('float64', coerce=True) with ge/le, finite, integral (int) and null-fraction "
            "(nullable) checks; categories and target as Column(str) with isin; strict; min_rows; lazy=True"
        )
    print()

    cli = loopml_command()
    help_text = subprocess.run([*cli, "validate", "--help"], capture_output=True, text=True, cwd=ROOT, check=False)
    has_validate = help_text.returncode == 0
    if not has_validate:
        print("loopml validate: not available in this checkout (`loopml validate --help` failed); skipped\n")
    # The default of 20 example rows per issue is kept unless a (check, column) holds more injected faults: then the
    # examples are raised so that every faulty row can be compared, not only the counts.
    largest = max(Counter((f.check, f.column) for f in data.faults).values(), default=0)
    extra_options: list[str] = []
    if largest > 20 and "--max-issue-rows" in help_text.stdout:
        extra_options = ["--max-issue-rows", str(largest)]
    if has_validate:
        shown = " ".join(["loopml validate FILE --contract CONTRACT --json", *extra_options])
        print(f"loopml: `{shown}` (exit 1 expected: the files hold faults)")

    runs: dict[tuple[str, str], Run] = {}
    problems: dict[str, list[str]] = {}
    notes: dict[str, list[str]] = {}
    print(HEADER)
    for fmt in formats:
        path = data.files[fmt]
        mb = path.stat().st_size / 1e6
        if has_validate:
            command = [*cli, "validate", str(path), "--contract", str(data.contract), "--json", *extra_options]
            run = measure("loopml validate", fmt, command, args.repeat, ok_codes=(0, 1))
            runs[fmt, run.tool] = run
            if run.failed:
                problems[fmt] = [f"loopml validate exited {run.code} without a JSON report: {run.stderr[-800:]}"]
                row(run, args.rows, mb, "-", f"FAILED (exit {run.code})")
            else:
                report = run.data
                problems[fmt] = verify_loopml(report, data.expected(fmt), args.rows, fmt)
                notes[fmt] = report_notes(report, path, fmt)
                own = report.get("seconds")
                inner = f"{own:.2f}" if isinstance(own, int | float) else "-"
                note = f"exit {run.code}, {len(report.get('issues', []))} issues, format {report.get('format')}"
                note += ", findings exact" if not problems[fmt] else ", FINDINGS DIFFER"
                row(run, int(report.get("rows") or args.rows), mb, inner, note)
        if has_validate:
            run = measure("validate_upload path", fmt, child_command("lambda", fmt, path, data.contract), args.repeat)
            runs[fmt, run.tool] = run
            if run.failed:
                row(run, args.rows, mb, "-", f"FAILED: {run.stderr[-300:]}")
            else:
                row(run, args.rows, mb, f"{run.data['seconds']:.2f}", f"Ingestor.ingest: {run.data['status']}")
        run = measure("pandas read", fmt, child_command("read", fmt, path, data.contract), args.repeat)
        runs[fmt, run.tool] = run
        reader = "read_parquet" if fmt == "parquet" else "read_csv"
        if run.failed:
            row(run, args.rows, mb, "-", f"FAILED: {run.stderr[-300:]}")
        else:
            row(run, args.rows, mb, f"{run.data['seconds']:.2f}", f"{reader}")
        if not args.skip_pandera:
            run = measure("pandera", fmt, child_command("pandera", fmt, path, data.contract), args.repeat)
            runs[fmt, run.tool] = run
            if run.failed:
                row(run, args.rows, mb, "-", f"FAILED: {run.stderr[-300:]}")
            else:
                inner = f"read {run.data['read_seconds']:.2f} + {run.data['validate_seconds']:.2f}"
                row(run, args.rows, mb, inner, f"{reader}, lazy validate")
    print()

    for fmt in formats:
        ours = runs.get((fmt, "loopml validate"))
        theirs = runs.get((fmt, "pandera"))
        if theirs is not None and not theirs.failed:
            print(f"pandera on {fmt}: {compare_pandera(theirs.data, data.expected(fmt))}")
        if ours is None or ours.failed or theirs is None or theirs.failed:
            continue
        checks = theirs.data["validate_seconds"] / ours.wall
        both = (theirs.data["read_seconds"] + theirs.data["validate_seconds"]) / ours.wall
        print(
            f"{fmt}: checks/pandera {checks:.1f}x (pandera validate {theirs.data['validate_seconds']:.2f}s vs "
            f"loopml end to end {ours.wall:.2f}s); pandas read + pandera validate / loopml {both:.1f}x; "
            f"pandera process / loopml process {theirs.wall / ours.wall:.1f}x"
        )
    for fmt, lines in notes.items():
        for line in lines:
            print(f"note on loopml's report for {fmt}: {line}")
    print()

    csv_run = runs.get(("csv", "loopml validate"))
    if has_validate:
        scale = "" if args.rows == 2_000_000 else f" (measured at {args.rows:,} rows; the goal is stated for 2 M)"
        if csv_run is not None and not csv_run.failed:
            rate = args.rows / csv_run.wall
            print(
                f"goal >= {GOAL_ROWS_PER_SECOND / 1e6:.0f} M rows/s end to end on the CSV: "
                f"{verdict(rate >= GOAL_ROWS_PER_SECOND)} ({rate / 1e6:.2f} M rows/s){scale}"
            )
        measured = [r for (_, tool), r in runs.items() if tool == "loopml validate" and not r.failed]
        if measured:
            worst = max(measured, key=lambda r: r.peak_mb)
            print(
                f"goal peak RSS <= {GOAL_PEAK_MB} MB: {verdict(worst.peak_mb <= GOAL_PEAK_MB)} "
                f"(largest {worst.peak_mb:.0f} MB, on {worst.fmt}; "
                + ", ".join(f"{r.fmt} {r.peak_mb:.0f}" for r in measured)
                + ")"
            )
        for fmt in formats:
            cli_run, lambda_run = runs.get((fmt, "loopml validate")), runs.get((fmt, "validate_upload path"))
            if cli_run is None or lambda_run is None or cli_run.failed or lambda_run.failed:
                continue
            slower = lambda_run.data["seconds"] / cli_run.data["seconds"] - 1
            print(
                f"goal validate_upload path within 20% of the CLI on {fmt}: {verdict(slower <= 0.2)} "
                f"({lambda_run.data['seconds']:.2f}s vs {cli_run.data['seconds']:.2f}s, {slower:+.0%})"
            )
        pandera_csv = runs.get(("csv", "pandera"))
        if csv_run is not None and not csv_run.failed and pandera_csv is not None and not pandera_csv.failed:
            ratio = pandera_csv.data["validate_seconds"] / csv_run.wall
            print(
                f"goal checks >= {GOAL_PANDERA_RATIO:.0f}x pandera on the CSV: "
                f"{verdict(ratio >= GOAL_PANDERA_RATIO)} ({ratio:.1f}x){scale}"
            )
    wrong = {fmt: lines for fmt, lines in problems.items() if lines}
    for fmt, lines in wrong.items():
        print(f"CORRECTNESS {fmt}: loopml validate disagrees with the injected faults:")
        for line in lines:
            print(f"  {line}")
    print(f"total benchmark time {time.perf_counter() - started:.1f}s")
    if wrong:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
