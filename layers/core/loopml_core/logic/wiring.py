"""Builds the pipeline steps from the environment; shared by the four pipeline handlers."""

from __future__ import annotations

from functools import cache

from loopml_core.adapters.object_store import S3ObjectStore
from loopml_core.adapters.table import DynamoTable
from loopml_core.logic.pipeline_steps import PipelineSteps
from loopml_core.registry import Registry
from loopml_core.settings import Settings


@cache
def pipeline_steps(actor: str) -> PipelineSteps:
    settings = Settings.from_env()
    return PipelineSteps(
        S3ObjectStore(),
        Registry(DynamoTable(settings.registry_table), actor=actor),
        settings.artifact_bucket,
        settings.code_version,
    )
