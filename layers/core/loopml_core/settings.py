"""Function settings, parsed from the environment the declaration gives every function (infra/declaration.py)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    data_bucket: str = Field(alias="DATA_BUCKET")
    artifact_bucket: str = Field(alias="ARTIFACT_BUCKET")
    registry_table: str = Field(alias="REGISTRY_TABLE")
    state_machine_arn: str | None = Field(default=None, alias="STATE_MACHINE_ARN")
    alert_topic_arn: str | None = Field(default=None, alias="ALERT_TOPIC_ARN")
    code_version: str = Field(default="dev", alias="LOOPML_CODE_VERSION")
    max_records_per_request: int = Field(default=1000, alias="LOOPML_MAX_RECORDS")
    alias_ttl_seconds: float = Field(default=5.0, alias="LOOPML_ALIAS_TTL_SECONDS")
    max_upload_bytes: int | None = Field(default=None, alias="LOOPML_MAX_UPLOAD_BYTES")
    capture_settle_seconds: int | None = Field(default=None, alias="LOOPML_CAPTURE_SETTLE_SECONDS")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        source = os.environ if environ is None else environ
        return cls.model_validate({k: v for k, v in source.items() if k in _ALIASES})


_ALIASES = {field.alias for field in Settings.model_fields.values() if field.alias}
