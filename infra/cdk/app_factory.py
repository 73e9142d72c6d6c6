"""Builds the CDK app the same way for `cdk synth/deploy`, `python app.py` and the infrastructure tests.

The context always starts from `cdk.json`, so a test synthesizes exactly what a deployment would (feature flags
included). When the cdk CLI runs the app it passes the same context itself, and its values win over these.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aws_cdk import App, Validations
from cdk_nag import AwsSolutionsChecks

from infra.cdk.layer_bundling import LayerBuilder
from infra.cdk.settings import DeploymentSettings
from infra.cdk.stack import LoopMLStack
from infra.declaration import ROOT

CDK_JSON = ROOT / "cdk.json"
STACK_ID = "LoopML"
# The documented switch for synthesizing without bundling any asset: assets keep their (source) hashes.
SKIP_BUNDLING: dict[str, Any] = {"aws:cdk:bundling-stacks": []}
# What the cdk CLI passes by default. Path metadata feeds the API deployment's logical id, so without it a test or
# `python app.py` would synthesize a different id than `cdk deploy` does.
CLI_DEFAULTS: dict[str, Any] = {"aws:cdk:enable-path-metadata": True}


def cdk_json_context(cdk_json: Path = CDK_JSON) -> dict[str, Any]:
    context: dict[str, Any] = json.loads(cdk_json.read_text())["context"]
    return context


def create_app(
    context: Mapping[str, Any] | None = None,
    *,
    outdir: str | None = None,
    layer_builder: LayerBuilder | None = None,
) -> tuple[App, LoopMLStack]:
    app = App(context={**CLI_DEFAULTS, **cdk_json_context(), **(context or {})}, outdir=outdir)
    stack = LoopMLStack(app, STACK_ID, settings=DeploymentSettings.from_node(app.node), layer_builder=layer_builder)
    # Any unacknowledged AwsSolutions finding fails synthesis, and therefore deployment.
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app, stack
