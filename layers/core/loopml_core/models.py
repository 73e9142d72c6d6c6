"""Registry entities, in the vocabulary of MLflow's registry: registered model, version, status, alias."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from loopml_core.uploads import source_id

CHAMPION = "champion"
CHALLENGER = "challenger"

# Models marked `defer_build` build their validators when first used rather than at import. Every function
# imports this module, and the predict function's cold start constructs none of them (it reads a serving state, a
# model version and a dataset's contract), so it does not pay for building theirs.


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
    model_config = ConfigDict(defer_build=True)  # built at first use (see the note above ObjectRef)

    dataset: str
    version: int
    object: ObjectRef
    source_key: str
    sha256: str
    rows: int
    contract_version: int
    format: str = "csv"  # csv | csv.gz | parquet: how `object` is stored, which is how training reads it
    profile: dict[str, Any] | None = None
    created_at: str


class UploadStatus(StrEnum):
    """The one outcome every upload to `incoming/` ends with."""

    ACCEPTED = "accepted"  # a new dataset version
    DUPLICATE = "duplicate"  # same content (SHA-256) as an existing version: nothing new registered or trained
    QUARANTINED = "quarantined"  # copied to quarantine/ beside a report naming every problem
    ERROR = "error"  # validation crashed or timed out after Lambda's retries (the on-failure destination)


class UploadOutcome(BaseModel):
    """What became of one uploaded object version; small by construction (the report itself lives in S3)."""

    model_config = ConfigDict(defer_build=True)  # built at first use (see the note above ObjectRef)

    dataset: str  # "_undeclared" when the key names no declared dataset
    source_key: str
    source_version_id: str | None = None
    status: UploadStatus
    summary: str
    sha256: str | None = None
    format: str | None = None
    rows: int | None = None
    dataset_version: int | None = None  # accepted: the new version; duplicate: the version it duplicates
    execution: str | None = None  # the pipeline run an accepted upload started
    quarantined: str | None = None  # s3:// URI of the quarantined copy
    report: str | None = None  # s3:// URI of its report
    at: str

    @property
    def source_id(self) -> str:
        return source_id(self.source_key, self.source_version_id)


class VersionStatus(StrEnum):
    """A model version's lifecycle (MLflow's words): only a READY version may serve, as champion, challenger or any
    alias. `ALLOWED_TRANSITIONS` says which changes a person may make."""

    PENDING_APPROVAL = "PENDING_APPROVAL"  # registered and evaluated; waits for an approver before it may serve
    READY = "READY"  # registered, evaluated (and approved, where the contract asks for it); may or may not serve
    REJECTED = "REJECTED"  # an approver turned it down (or nobody decided in time): it never serves
    FAILED = "FAILED"  # its registration could not complete: the artefact is not to be used
    ARCHIVED = "ARCHIVED"  # retired by a person; kept with its lineage, back to READY if needed


ALLOWED_TRANSITIONS: dict[VersionStatus, frozenset[VersionStatus]] = {
    VersionStatus.PENDING_APPROVAL: frozenset({VersionStatus.READY, VersionStatus.REJECTED}),
    VersionStatus.READY: frozenset({VersionStatus.ARCHIVED}),
    VersionStatus.ARCHIVED: frozenset({VersionStatus.READY}),
    VersionStatus.REJECTED: frozenset(),
    VersionStatus.FAILED: frozenset(),
}


class RegisteredModel(BaseModel):
    """A model as a whole: its description and tags (its versions and aliases are items of their own)."""

    model_config = ConfigDict(defer_build=True)  # built at first use (see the note above ObjectRef)

    name: str
    description: str = ""
    tags: dict[str, str] = Field(default_factory=dict)
    created_at: str | None = None
    updated_at: str | None = None


class ModelVersion(BaseModel):
    model: str
    version: int
    status: VersionStatus = VersionStatus.READY
    tags: dict[str, str] = Field(default_factory=dict)
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
    # Computed once by the evaluation step for the model card (loopml_core.cards renders them, never recomputes);
    # versions registered before these existed load with the defaults and their cards say so.
    champion_version: int | None = None  # the champion the candidate was judged against, if there was one
    metric_intervals: dict[str, dict[str, float]] = Field(default_factory=dict)  # {metric: {"low", "high"}}
    champion_metric_intervals: dict[str, dict[str, float]] | None = None
    comparison: dict[str, Any] | None = None  # primary metric, difference and its paired bootstrap interval
    feature_importance: list[dict[str, Any]] = Field(default_factory=list)  # [{"feature", "mean", "std", ...}]
    fairness: dict[str, Any] | None = None  # per sensitive feature, when the contract declares any
    evaluation_method: dict[str, Any] = Field(default_factory=dict)  # resamples, confidence, repeats, seed
    contract_version: int | None = None  # the dataset's contract when the version was registered
    contract_fingerprint: str | None = None


class RunStatus(StrEnum):
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


class PipelineRun(BaseModel):
    model_config = ConfigDict(defer_build=True)  # built at first use (see the note above ObjectRef)

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


class ApprovalRequest(BaseModel):
    """A version waiting for a person's decision: the task token its pipeline run waits on, and until when."""

    model_config = ConfigDict(defer_build=True)  # built at first use (see the note above ObjectRef)

    model: str
    version: int
    execution: str
    token: str
    requested_at: str
    deadline: str


class ApprovalDecision(BaseModel):
    """What an approval or a rejection did: the version's new status, whether it became champion, and why not."""

    model_config = ConfigDict(defer_build=True)  # built at first use (see the note above ObjectRef)

    version: ModelVersion
    champion: bool
    note: str
    request: ApprovalRequest | None  # the pipeline run to resume, if one waits


class ModelAlias(BaseModel):
    """A user-defined alias (`staging`, `candidate`...) naming one READY version of a model."""

    model_config = ConfigDict(defer_build=True)  # built at first use (see the note above ObjectRef)

    model: str
    alias: str
    version: int
    since: str


class DeliveryMode(StrEnum):
    """How a challenger version gets traffic beside the champion (docs/delivery.md)."""

    CANARY = "canary"  # a weighted share of clients is answered by the challenger, sticky per client key
    SHADOW = "shadow"  # the champion answers every request; the challenger scores the same records off the answer
    AB = "ab"  # a fixed split for an experiment, sticky per client key, compared per variant


class Deployment(BaseModel):
    """A challenger in progress: the `challenger` alias item, which also says how it gets traffic.

    `weight` is the percent of traffic the challenger answers (canary, ab); shadow has none: the champion answers all
    of it. `since` is when this challenger's deployment began (comparisons count labels from that day);
    `changed_at` when its mode or weight last changed.
    """

    model_config = ConfigDict(frozen=True)

    model: str
    version: int
    mode: DeliveryMode
    weight: int | None = None
    since: str
    changed_at: str
    by: str
    reason: str

    def describe(self) -> str:
        """One line for people: `canary, 10% of traffic, sticky per client key`."""
        if self.mode is DeliveryMode.SHADOW:
            return "shadow, the champion answers and the challenger scores every request off the response path"
        kind = "canary" if self.mode is DeliveryMode.CANARY else "A/B test"
        return f"{kind}, {self.weight}% of traffic, sticky per client key"


class ServingState(BaseModel):
    """What the predict path needs to route a request, read in one registry call (`Registry.serving_state`)."""

    model_config = ConfigDict(frozen=True)

    model: str
    champion: int
    deployment: Deployment | None = None


class AuditRecord(BaseModel):
    model_config = ConfigDict(defer_build=True)  # built at first use (see the note above ObjectRef)

    seq: int
    at: str
    actor: str
    action: str
    subject: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


class DriftEpisode(BaseModel):
    """A stretch of consecutive checks that found drift: alerted once, when it began."""

    model_config = ConfigDict(defer_build=True)  # built at first use (see the note above ObjectRef)

    since: str  # when the check that opened it ran
    window: str  # the window that opened it
    columns: list[str]


class MonitorState(BaseModel):
    """Where a model's monitoring stands: what has been read, whether it is drifting, what it has started.

    `revision` guards every change: a check writes its state only over the one it read, in the same transaction
    as its audit record, so a retried or concurrent check cannot skip a window or record one twice.
    """

    model_config = ConfigDict(defer_build=True)  # built at first use (see the note above ObjectRef)

    model: str
    revision: int = 0
    champion_version: int | None = None  # the champion the episodes below are about
    cursor: str | None = None  # every batch up to this one (`<hour path>/<object name>`) has been read
    open_batches: list[str] = Field(default_factory=list)  # batches read in hours where more may still appear
    episode: DriftEpisode | None = None
    performance_drop: str | None = None  # version and day whose live metric fell beyond tolerance, until it recovers
    retrain_starts: list[str] = Field(default_factory=list)  # monitoring-triggered starts of the last 24 hours
    last_check: str | None = None


class Alert(BaseModel):
    """An alert to publish, written in the transaction of the check that raised it and published after it, so a
    failed publish is retried by the next check instead of lost; its id is derived from the model and window."""

    model_config = ConfigDict(defer_build=True)  # built at first use (see the note above ObjectRef)

    id: str
    subject: str
    message: str
    created_at: str
