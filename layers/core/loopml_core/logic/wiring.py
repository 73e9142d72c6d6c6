"""Builds the pipeline steps from the environment; shared by the four pipeline handlers."""

from __future__ import annotations

from functools import cache

from loopml_core.adapters.events import EventBridgePublisher
from loopml_core.adapters.object_store import S3ObjectStore
from loopml_core.adapters.table import DynamoTable
from loopml_core.audit_anchor import S3AuditAnchor
from loopml_core.logic.pipeline_steps import PipelineSteps
from loopml_core.registry import Registry
from loopml_core.settings import Settings


@cache
def pipeline_steps(actor: str) -> PipelineSteps:
    settings = Settings.from_env()
    return PipelineSteps(
        S3ObjectStore(),
        # The registry writers among them (register_model, record_failure) are granted checkpoints; the others read.
        Registry(
            DynamoTable(settings.registry_table),
            actor=actor,
            anchor=S3AuditAnchor.if_granted(),
            events=EventBridgePublisher.from_env(),  # register_model's: the registration's version and alias events
        ),
        settings.artifact_bucket,
        settings.code_version,
    )
