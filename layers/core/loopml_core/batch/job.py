"""What the plan step decides and every later step reads (`plan.json`), and what each chunk's worker reports."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from loopml_core.models import ObjectRef


class SourceRef(BaseModel):
    model_config = ConfigDict(frozen=True)

    bucket: str
    key: str
    version_id: str | None = None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


class JobPlan(BaseModel):
    """One batch: the input version, the model version pinned for every chunk, and the chunks (or why none)."""

    execution: str
    model: str
    source: SourceRef
    name: str  # the input's name under batch/<model>/input/
    stem: str
    format: str | None = None  # csv | parquet, when LoopML scores the file's format
    model_version: int | None = None
    artifact: ObjectRef | None = None
    contract: dict[str, Any] | None = None
    id_column: str | None = None  # keep this input column only (the upload's loopml-id-column tag)
    header: list[str] = Field(default_factory=list)  # CSV header names, or the Parquet schema's
    header_text: str | None = None  # CSV: the header as written, without its line ending
    output_key: str | None = None
    report_key: str
    chunks: int = 0
    issues: list[dict[str, Any]] = Field(default_factory=list)  # why nothing is scored (validation Issue shape)
    planned_at: str

    @property
    def refused(self) -> bool:
        return bool(self.issues)

    @property
    def extension(self) -> str:
        return "parquet" if self.format == "parquet" else "csv"


class ChunkResult(BaseModel):
    """What one worker did with its chunk, written beside the chunk's part."""

    index: int
    records: int  # data records read, those left out of the output included
    output_rows: int  # rows written to the part
    scored: int
    columns: list[str]  # the part's columns
    findings: list[dict[str, Any]] = Field(default_factory=list)  # `report.Findings`, rows local to the chunk
    fatal: dict[str, Any] | None = None  # an Issue that makes the file unreadable; nothing of it is output
    part_key: str | None = None
    part_version_id: str | None = None
    seconds: float = 0.0
