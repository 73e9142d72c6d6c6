"""The CLI explains itself and fails with one clear line when it cannot reach anything."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from infra.cli.main import cli

COMMANDS = [
    ["demo"],
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
    ["audit", "list"],
    ["audit", "verify"],
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
        ["upload"],
        ["models", "show"],
        ["predict"],
        ["drift", "check"],
        ["audit", "verify"],
        ["local", "info"],
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
