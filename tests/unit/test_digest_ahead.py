"""A local file's digest computed ahead gives the very report the streamed digest gives, for every format."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from infra.cli import entry
from infra.demo import data
from loopml_core import digest
from loopml_core.contract import load_contract
from loopml_core.validation import FileSource, validate

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = load_contract((ROOT / "infra" / "demo" / "churn.yaml").read_text())


def parquet_bytes(rows: list[dict]) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), sink)
    return sink.getvalue()


@pytest.mark.parametrize(
    ("name", "encode"),
    [
        ("a.csv", data.to_csv),
        ("a.csv.gz", lambda rows: gzip.compress(data.to_csv(rows))),
        ("a.parquet", parquet_bytes),
    ],
)
def test_a_digest_computed_ahead_is_the_streamed_one(tmp_path, name, encode):
    path = tmp_path / name
    path.write_bytes(encode(data.customers(500, seed=3)))
    streamed = validate(CONTRACT, FileSource(path)).report
    progress: list[int] = []
    ahead = validate(CONTRACT, FileSource(path, digest_ahead=digest.DigestAhead(path)), on_progress=progress.append)
    assert ahead.report == streamed and streamed.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert progress  # the progress bar still moves


def test_a_file_gone_before_it_is_hashed_is_an_os_error(tmp_path):
    with pytest.raises(OSError):
        digest.DigestAhead(tmp_path / "missing.csv").hexdigest()


@pytest.mark.parametrize(
    ("args", "started"),
    [
        (["f.csv", "--contract", "c.yaml"], "f.csv"),
        (["--contract", "c.yaml", "--json", "f.csv"], "f.csv"),
        (["--max-issue-rows", "5", "f.csv"], "f.csv"),
        (["missing.csv"], None),
    ],
)
def test_the_entry_point_starts_the_validated_files_digest(tmp_path, monkeypatch, args, started):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "f.csv").write_bytes(b"a\n1\n")
    (tmp_path / "c.yaml").write_bytes(b"name: x\n")
    monkeypatch.setattr(digest, "_started", {})
    entry._hash_ahead(args)
    assert [p.name for p in digest._started] == ([started] if started else [])


def test_the_command_prints_the_files_sha256(tmp_path):
    path = tmp_path / "jan.csv"
    path.write_bytes(data.to_csv(data.customers(300, seed=4)))
    contract = tmp_path / "churn.yaml"
    contract.write_text((ROOT / "infra" / "demo" / "churn.yaml").read_text())
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from infra.cli.entry import main; main()",
            "validate",
            str(path),
            "--contract",
            str(contract),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_command_keeps_its_exit_codes_and_whole_output(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_bytes(data.malformed_csv())
    contract = tmp_path / "churn.yaml"
    contract.write_text((ROOT / "infra" / "demo" / "churn.yaml").read_text())

    def loopml(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-c", "from infra.cli.entry import main; main()", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)

    invalid = loopml("validate", str(bad), "--contract", str(contract), "--json")
    assert invalid.returncode == 1 and json.loads(invalid.stdout)["ok"] is False
    table = loopml("validate", str(bad), "--contract", str(contract))
    assert (
        table.returncode == 1 and table.stdout.startswith("invalid: 6 issues") and table.stdout.rstrip().endswith("┘")
    )
    usage = loopml("validate", str(tmp_path / "missing.csv"), "--contract", str(contract))
    assert usage.returncode == 2 and "does not exist" in usage.stderr
