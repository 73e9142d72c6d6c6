"""Shared test set-up: no test reaches a real AWS account or the internet."""

from __future__ import annotations

import os

import pytest

os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
)


@pytest.fixture
def loopml_home(tmp_path, monkeypatch):
    """A private state directory, so tests never touch the checkout's .loopml/."""
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path / "loopml"))
    return tmp_path / "loopml"
