"""The batch functions' settings, parsed from the environment the declaration gives them (infra/declaration.py)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

# Used where the declaration's environment does not say (tests, the CLI); infra/declaration.py sets both.
DEFAULT_CHUNK_ROWS = 100_000
DEFAULT_CHUNK_BYTES = 64 << 20


class BatchSettings(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    data_bucket: str = Field(alias="DATA_BUCKET")
    artifact_bucket: str = Field(alias="ARTIFACT_BUCKET")
    registry_table: str = Field(alias="REGISTRY_TABLE")
    state_machine_arn: str | None = Field(default=None, alias="BATCH_STATE_MACHINE_ARN")
    chunk_rows: int = Field(default=DEFAULT_CHUNK_ROWS, alias="LOOPML_BATCH_CHUNK_ROWS", ge=1)
    chunk_bytes: int = Field(default=DEFAULT_CHUNK_BYTES, alias="LOOPML_BATCH_CHUNK_BYTES", ge=1)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> BatchSettings:
        source = os.environ if environ is None else environ
        aliases = {field.alias for field in cls.model_fields.values() if field.alias}
        return cls.model_validate({key: value for key, value in source.items() if key in aliases})
