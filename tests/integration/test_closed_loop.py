"""The whole loop on the local cloud, exactly as `loopml demo` runs it, with each stage's outcome asserted."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from infra.cli.demo import run_demo

pytestmark = [pytest.mark.loop, pytest.mark.xdist_group("local-cloud")]


def test_the_loop_closes(loopml_home):
    output = io.StringIO()
    summary = run_demo(Console(file=output, width=140), rows=2000)
    text = output.getvalue()
    # v1 trained on the stable world and became champion
    assert summary["v1_metrics"]["accuracy"] > 0.6
    # the malformed upload's report named all six faults
    assert summary["quarantine_issues"] >= 6
    # v2 retrained on the newer data and beat v1 on the same holdout
    assert summary["v2_metrics"]["accuracy"] > summary["v1_on_new_holdout"]["accuracy"]
    assert "X-Model-Version: 2" in text
    # every state change is in the verified audit trail
    assert summary["audit_records"] >= 9 and "chain intact" in text
    for stage in [
        "Declare the dataset contract",
        "quarantined",
        "a duplicate",
        "drift schedule fires",
        "audit trail, verified",
    ]:
        assert stage in text
