"""The CLI explains itself and fails with one clear line when it cannot reach anything."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from infra.cli.main import cli
from infra.demo import data

COMMANDS = [
    ["demo"],
    ["validate"],
    ["local", "up"],
    ["local", "info"],
    ["datasets", "create"],
    ["upload"],
    ["pipeline", "status"],
    ["models", "list"],
    ["models", "show"],
    ["models", "rollback"],
    ["predict"],
    ["drift", "check"],
    ["drift", "report"],
    ["alerts", "subscribe"],
    ["audit", "list"],
    ["audit", "verify"],
    ["batch"],
    ["keys", "create"],
    ["keys", "list"],
    ["keys", "revoke"],
    ["models", "deploy"],
    ["models", "promote"],
    ["models", "compare"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help(command):
    result = CliRunner().invoke(cli, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage: " in result.output and len(result.output.splitlines()) > 4


@pytest.mark.parametrize(
    "command",
    [
        ["datasets", "create"],
        ["datasets", "show"],
        ["validate"],
        ["upload"],
        ["models", "show"],
        ["predict"],
        ["drift", "check"],
        ["drift", "report"],
        ["alerts", "subscribe"],
        ["audit", "verify"],
        ["local", "info"],
        ["batch"],
        ["keys", "create"],
        ["models", "deploy"],
    ],
    ids=" ".join,
)
def test_the_main_commands_show_an_example(command):
    assert "loopml " in CliRunner().invoke(cli, [*command, "--help"]).output.split("xample", 1)[1]


def test_local_info_without_a_local_cloud_says_what_to_do(loopml_home):
    result = CliRunner().invoke(cli, ["local", "info", "--json"])
    assert result.exit_code == 2
    assert "loopml local up" in result.output


def test_a_bad_contract_file_is_a_clear_error(tmp_path, loopml_home):
    contract = tmp_path / "bad.yaml"
    contract.write_text("name: Churn!\ntask: clustering\n")
    result = CliRunner().invoke(
        cli, ["--endpoint-url", "http://127.0.0.1:9", "datasets", "create", "--contract", str(contract)]
    )
    assert result.exit_code == 2 and "error:" in result.output and "Traceback" not in result.output


CHURN = Path(__file__).resolve().parents[2] / "infra" / "demo" / "churn.yaml"


@pytest.fixture
def clean_csv(tmp_path):
    path = tmp_path / "customers.csv"
    path.write_bytes(data.to_csv(data.customers(300, seed=1)))
    return path


def test_validate_exits_0_for_a_valid_file_and_prints_its_hash(clean_csv):
    result = CliRunner().invoke(cli, ["validate", str(clean_csv), "--contract", str(CHURN)])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output and hashlib.sha256(clean_csv.read_bytes()).hexdigest() in result.output


def test_validate_json_is_the_quarantine_report_and_exits_1(tmp_path):
    path = tmp_path / "broken.csv.gz"
    path.write_bytes(gzip.compress(data.malformed_csv()))
    result = CliRunner().invoke(cli, ["validate", str(path), "--contract", str(CHURN), "--json"])
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["ok"] is False and report["format"] == "csv.gz" and report["dataset"] == "churn"
    assert report["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert report["rows"] > 0 and report["seconds"] >= 0 and report["summary"].startswith("rejected")
    tenure = next(i for i in report["issues"] if i["column"] == "tenure_months")
    assert tenure["rows"] == [3] and tenure["lines"] == [5]


def test_validate_table_names_each_problem(tmp_path):
    path = tmp_path / "broken.csv"
    path.write_bytes(data.malformed_csv())
    result = CliRunner().invoke(cli, ["validate", str(path), "--contract", str(CHURN)])
    assert result.exit_code == 1
    assert "tenure_months" in result.output and "invalid" in result.output


@pytest.mark.parametrize("args", [["nope.csv"], ["--contract", "nope.yaml"]])
def test_validate_usage_errors_exit_2(clean_csv, args):
    full = [str(clean_csv), "--contract", str(CHURN)] if args == ["nope.csv"] else [str(clean_csv), *args]
    if args == ["nope.csv"]:
        full[0] = "nope.csv"
    assert CliRunner().invoke(cli, ["validate", *full]).exit_code == 2
