"""Registry entities, in the vocabulary of MLflow's registry: registered model, version, status, alias."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

CHAMPION = "champion"


class ObjectRef(BaseModel):
    model_config = ConfigDict(frozen=True)

    bucket: str
    key: str
    version_id: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


class Dataset(BaseModel):
    name: str
    contract: dict[str, Any]
    contract_version: int
    contract_fingerprint: str
    latest_version: int = 0
    created_at: str
    updated_at: str


class DatasetVersion(BaseModel):
    dataset: str
    version: int
    object: ObjectRef
    source_key: str
    sha256: str
    rows: int
    contract_version: int
    profile: dict[str, Any] | None = None
    created_at: str


class VersionStatus(StrEnum):
    READY = "READY"  # registered, evaluated; may or may not be champion


class ModelVersion(BaseModel):
    model: str
    version: int
    status: VersionStatus = VersionStatus.READY
    task: str
    dataset_version: int
    execution: str
    artifact: ObjectRef
    baseline: ObjectRef
    metrics: dict[str, float]
    champion_metrics: dict[str, float] | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    parity: dict[str, Any] = Field(default_factory=dict)
    code_version: str
    promoted: bool
    decision: str
    created_at: str


class RunStatus(StrEnum):
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


class PipelineRun(BaseModel):
    model: str
    execution: str
    status: RunStatus
    trigger: str
    dataset_version: int | None = None
    model_version: int | None = None
    error: str | None = None
    cause: str | None = None
    finished_at: str


class Champion(BaseModel):
    model: str
    version: int
    since: str


class AuditRecord(BaseModel):
    seq: int
    at: str
    actor: str
    action: str
    subject: str
    details: dict[str, Any]
    prev_hash: str
    hash: str
