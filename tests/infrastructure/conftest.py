"""One synthesis of the real CDK app per test session, with bundling skipped so no layer is built (no pip)."""

from __future__ import annotations

import os

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from collections.abc import Iterator

import pytest
from cfn_template import Synthesized, Template

from infra.cdk.app_factory import SKIP_BUNDLING, create_app


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synthesized]:
    outdir = tmp_path_factory.mktemp("cdk.out")
    app, stack = create_app(SKIP_BUNDLING, outdir=str(outdir))
    # Synthesis runs the AwsSolutions checks as a validation plugin: an unacknowledged finding fails it here.
    assembly = app.synth()
    artifact = assembly.get_stack_by_name(stack.stack_name)
    yield Synthesized(app, stack, Template(artifact.template), str(outdir / artifact.template_file))


@pytest.fixture(scope="session")
def template(synthesized: Synthesized) -> Template:
    return synthesized.template
