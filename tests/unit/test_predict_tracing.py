"""The tracer is created, and the X-Ray SDK imported, only when tracing is on."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap
from types import ModuleType

import pytest
from aws_lambda_powertools import Tracer

from infra import declaration as decl


@pytest.fixture
def observability(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """loopml_core.observability imported as a function imports it: inside its environment (Metrics reads its
    namespace there, once). Taken out of sys.modules afterwards, so no handler later loaded in this process gets it."""
    names = decl.Names(account="123456789012", region="us-east-1")
    for name, value in decl.function_environment(names, decl.FUNCTIONS["predict"]).items():
        monkeypatch.setenv(name, value)
    saved = sys.modules.pop("loopml_core.observability", None)
    try:
        yield importlib.import_module("loopml_core.observability")
    finally:
        sys.modules.pop("loopml_core.observability", None)
        if saved is not None:
            sys.modules["loopml_core.observability"] = saved


@pytest.mark.parametrize(
    ("environment", "on"),
    [
        ({"LAMBDA_TASK_ROOT": "/var/task"}, True),
        ({"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "true"}, False),
        ({"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "1"}, False),
        ({"LAMBDA_TASK_ROOT": "/var/task", "AWS_SAM_LOCAL": "true"}, False),
        ({}, False),  # not in Lambda: no X-Ray daemon to send to
    ],
)
def test_tracing_is_on_in_lambda_unless_switched_off(observability, monkeypatch, environment, on):
    for name in ("LAMBDA_TASK_ROOT", "POWERTOOLS_TRACE_DISABLED", "AWS_SAM_LOCAL", "AWS_CHALICE_CLI_MODE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert observability.tracing_enabled() is on


def test_with_tracing_off_decorated_functions_run_as_they_are_and_no_tracer_exists(observability):
    lazy = observability.LazyTracer(enabled=lambda: False)

    @lazy.capture_lambda_handler
    def handler(event, context):
        return {"event": event}

    @lazy.capture_method
    def method(x: int) -> int:
        return x + 1

    assert handler("e", None) == {"event": "e"} and method(1) == 2
    assert lazy.active is None
    assert handler.__name__ == "handler" and method.__wrapped__(2) == 3  # the signature Powertools reads is kept


def test_with_tracing_on_the_powertools_tracer_is_made_once_at_first_call(observability, monkeypatch):
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")  # a real Tracer, but sending nothing from a test
    decided = []
    lazy = observability.LazyTracer(enabled=lambda: decided.append(1) or True)

    @lazy.capture_method
    def method(x: int) -> int:
        return x * 2

    assert decided == []  # nothing at decoration (import) time
    assert method(2) == 4 and method(3) == 6
    assert isinstance(lazy.active, Tracer) and decided == [1]


def test_importing_observability_imports_no_xray_sdk():
    script = textwrap.dedent(
        """
        import sys
        from loopml_core.observability import logger, metrics, tracer
        print("aws_xray_sdk" in sys.modules, "botocore.session" in sys.modules)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False", "False"]
