"""The registry: datasets, dataset versions, model versions, aliases, pipeline runs and a hash-chained audit trail.

Plain Python over the `Table` adapter. Every state change is written in one transaction together with its audit
record(s) and the audit head, so a change without its audit record (or the reverse) cannot exist. Each audit record
carries the hash of the one before it; `verify_audit` recomputes the chain and finds edited, inserted or deleted
records.

Aliases live under the model's partition as `ALIAS#<name>` items, each with a numeric `version` attribute and a
document holding at least `model`, `version` and `since`. `champion` is the version that answers; `challenger`, while
a deployment is in progress, is the version that gets traffic beside it, and its document is the `Deployment` (mode,
weight, who, why). So one Query on the model's `ALIAS#` items (`serving_state`) tells the predict path everything it
routes on.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from loopml_core.adapters.events import ALIAS_CHANGE, VERSION_STATE_CHANGE, EventPublisher, RegistryEvent
from loopml_core.adapters.table import MAX_TRANSACTION_ITEMS, Check, Delete, Item, Put, Table, Write
from loopml_core.clock import iso
from loopml_core.contract import DatasetContract
from loopml_core.errors import ConflictError, NotFoundError
from loopml_core.models import (
    ALLOWED_TRANSITIONS,
    CHALLENGER,
    CHAMPION,
    Alert,
    ApprovalDecision,
    ApprovalRequest,
    AuditRecord,
    Champion,
    Dataset,
    DatasetVersion,
    DeliveryMode,
    Deployment,
    ModelAlias,
    ModelVersion,
    MonitorState,
    PipelineRun,
    RegisteredModel,
    RunStatus,
    ServingState,
    UploadOutcome,
    UploadStatus,
    VersionStatus,
)

if TYPE_CHECKING:
    from loopml_core.audit_anchor import AuditAnchor, Checkpoint
    from loopml_core.performance import PerformanceCounts  # numpy: not in the core layer every function has

GENESIS_HASH = "0" * 64
AUDIT_PAGE = 1000  # audit records verify reads per query: memory stays bounded however long the chain
AUDIT_PK = "AUDIT"
AUDIT_HEAD_SK = "HEAD"
AUDIT_RECORD_PREFIX = "E#"
DATASETS_INDEX_PK = "DATASETS"
UNDECLARED = "_undeclared"  # the dataset that uploads naming no declared dataset are recorded under
MODELS_INDEX_PK = "MODELS"
COMMIT_ATTEMPTS = 5
MONITOR_SK = "MONITOR"
TRANSACTION_ROOM = MAX_TRANSACTION_ITEMS - 10  # writes of a change besides its outcome, audit records and head
OUTBOX_PK = "OUTBOX"
ALIAS_PREFIX = "ALIAS#"
AB_DEFAULT_WEIGHT = 50

_log = logging.getLogger(__name__)


def _dataset_pk(name: str) -> str:
    return f"DATASET#{name}"


def _model_pk(name: str) -> str:
    return f"MODEL#{name}"


def _version_sk(version: int) -> str:
    return f"V#{version:08d}"


def _alias_sk(name: str) -> str:
    return f"{ALIAS_PREFIX}{name}"


def _alias_subject(model: str, name: str) -> str:
    return f"model/{model}/alias/{name}"


def _performance_pk(model: str, version: int) -> str:
    return f"PERF#{model}#v{version:08d}"


def _performance_puts(
    model: str, source: str, tag: str, counts: Mapping[tuple[int, str], PerformanceCounts]
) -> list[Put]:
    """One item per (version, day) of a label file's counts, keyed by the file (and `tag`, e.g. the check that
    matched them late), so the same counts can never be written twice."""
    puts = []
    for (version, day), counted in sorted(counts.items()):
        document = {"version": version, "day": day, "source": source, "counts": counted.to_json()}
        puts.append(Put(_doc_item(_performance_pk(model, version), f"{day}#{source}{tag}", document), if_absent=True))
    return puts


def _sha_sk(sha256: str) -> str:
    return f"SHA#{sha256}"


def _upload_sk(source_id: str) -> str:
    return f"UPLOAD#{source_id}"


def _audit_sk(seq: int) -> str:
    return f"{AUDIT_RECORD_PREFIX}{seq:012d}"


MAX_DESCRIPTION_CHARS = 5000
MAX_TAG_VALUE_CHARS = 256
TAG_KEY = re.compile(r"^[\w.\-/:@ ]{1,128}$")
ALIAS_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
RESERVED_ALIASES = frozenset({CHAMPION, CHALLENGER})


def _check_tag(key: str, value: str) -> None:
    if not TAG_KEY.fullmatch(key):
        raise ValueError(f"tag key {key!r}: 1-128 letters, digits, spaces and _ . - / : @")
    if len(value) > MAX_TAG_VALUE_CHARS:
        raise ValueError(f"the value of tag {key!r} holds at most {MAX_TAG_VALUE_CHARS} characters, not {len(value)}")


def _check_alias(alias: str) -> None:
    if alias in RESERVED_ALIASES:
        raise ValueError(
            f"'{alias}' moves with the model's deployments: use `loopml models promote`, `deploy` or `rollback`"
        )
    if not ALIAS_NAME.fullmatch(alias):
        raise ValueError(f"alias {alias!r}: a lower-case letter, then up to 62 lower-case letters, digits, _ or -")


EVENT_PREFIX = "EVENT#"


def _event_sk(seq: int) -> str:
    return f"{EVENT_PREFIX}{seq:012d}"


def _bus_event(record: AuditRecord) -> RegistryEvent | None:
    """The EventBridge event of an audit record about a model version or an alias, or None for other changes."""
    parts = record.subject.split("/")
    common = {
        "action": record.action,
        "actor": record.actor,
        "at": record.at,
        "audit_seq": record.seq,
        "details": record.details,
    }
    if record.action.startswith("model.version.") and len(parts) == 3 and parts[2].startswith("v"):
        detail = {"model": parts[1], "version": int(parts[2][1:]), **common}
        return RegistryEvent(VERSION_STATE_CHANGE, detail)
    if record.action.startswith(("model.alias.", "model.deployment.")) and len(parts) == 4 and parts[2] == "alias":
        return RegistryEvent(ALIAS_CHANGE, {"model": parts[1], "alias": parts[3], **common})
    return None


def _approval_sk(version: int) -> str:
    return f"APPROVAL#{version:08d}"


def _version_name(version: int | None) -> str:
    return "no champion" if version is None else f"v{version}"


def _must_wait(record: ModelVersion) -> None:
    if record.status is not VersionStatus.PENDING_APPROVAL:
        raise ValueError(
            f"v{record.version} of '{record.model}' is {record.status}: only a PENDING_APPROVAL version is decided on"
        )


def _must_serve(record: ModelVersion) -> None:
    if record.status is not VersionStatus.READY:
        raise ValueError(f"v{record.version} of '{record.model}' is {record.status}: only a READY version may serve")


def _registered_model(item: Item) -> RegisteredModel:
    # Models registered before descriptions and tags existed have an index item without a document.
    return RegisteredModel(**_doc(item)) if "doc" in item else RegisteredModel(name=str(item["sk"]))


def _replacing(current: Item, item: Item) -> Put:
    """A write of `item` over `current` that fails if another writer changed it meanwhile."""
    return (
        Put(item, if_equals={"doc": str(current["doc"])})
        if "doc" in current
        else Put(item, if_equals={"sk": str(current["sk"])})
    )


def _doc_item(pk: str, sk: str, doc: dict[str, Any], **attributes: str | int) -> Item:
    return {"pk": pk, "sk": sk, "doc": json.dumps(doc, sort_keys=True, separators=(",", ":")), **attributes}


def _doc(item: Item) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(str(item["doc"]))
    return loaded


def _record_problems(item: Item, record: dict[str, Any], expected_seq: int, prev_hash: str) -> list[str]:
    """What is wrong with one audit record in its place in the chain."""
    seq = int(record["seq"])
    problems = []
    if seq != expected_seq:
        problems.append(f"record {expected_seq} is missing (found {seq} next)")
    if item["sk"] != _audit_sk(seq):
        problems.append(f"record {seq} is stored under the wrong key {item['sk']}")
    if record.get("prev_hash") != prev_hash:
        problems.append(f"record {seq} does not link to the record before it")
    if audit_hash(record) != record.get("hash"):
        problems.append(f"record {seq} was altered: its content does not match its hash")
    return problems


def _unanchored(anchored_to: int, last_seq: int) -> str:
    span = f"record {last_seq} is" if last_seq == anchored_to + 1 else f"records {anchored_to + 1}..{last_seq} are"
    newest = f"the newest checkpoint is record {anchored_to}" if anchored_to else "there is no checkpoint yet"
    return f"{span} not yet anchored ({newest}): a checkpoint failed, or is being written"


class _AnchorReads:
    """The anchor as `verify_audit` reads it: a read that fails (no such bucket, no permission) is reported once, as
    `failure`, and nothing more is read."""

    def __init__(self, anchor: AuditAnchor) -> None:
        self.anchor = anchor
        self.failure = ""

    def checkpoints(self, from_seq: int, to_seq: int | None = None) -> list[Checkpoint]:
        if self.failure:
            return []
        try:
            return self.anchor.checkpoints(from_seq, to_seq)  # a page's sequence numbers, or the few past the end
        except Exception as error:
            self.failure = f"the audit checkpoints could not be read, so the chain was not compared with them: {error}"
            return []


def _checkpoint_problem(checkpoint: Checkpoint, table_hash: str | None) -> str | None:
    """What is wrong with the table's record at a checkpoint's sequence number, if anything."""
    if table_hash is None:
        return f"record {checkpoint.seq} is missing but checkpoint {checkpoint.seq} taken at {checkpoint.at} anchors it"
    if table_hash != checkpoint.hash:
        return f"record {checkpoint.seq} differs from checkpoint {checkpoint.seq} taken at {checkpoint.at}"
    return None


def audit_hash(record: dict[str, Any]) -> str:
    """SHA-256 of the record's canonical JSON, without its own hash."""
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class Event:
    """What happened, for the audit trail."""

    action: str
    subject: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditVerification:
    """`problems` are tampering (`ok` is False); `warnings` are not (e.g. records newer than the newest checkpoint)."""

    ok: bool
    checked: int
    problems: list[str]
    warnings: list[str] = field(default_factory=list)
    anchored_to: int = 0  # the newest checkpoint's sequence number the chain reaches (0: none, or no anchor)


@dataclass(frozen=True)
class Rollback:
    """What a rollback did: the champion after it, and the deployment it ended (if one was in progress)."""

    champion: Champion
    ended: Deployment | None
    moved: bool  # whether the champion alias moved


def deployment_weight(mode: DeliveryMode, weight: int | None) -> int | None:
    """The weight a deployment in `mode` runs with, or ValueError saying what is wrong with `weight`.

    Canary needs one; A/B defaults to an even split; shadow takes none (the champion answers everything). A weight
    is a whole percent of traffic from 1 to 99: 0 would be no deployment, 100 a promotion.
    """
    if mode is DeliveryMode.SHADOW:
        if weight is not None:
            raise ValueError("shadow takes no weight: the champion answers every request and the challenger scores all")
        return None
    if weight is None:
        if mode is DeliveryMode.AB:
            return AB_DEFAULT_WEIGHT
        raise ValueError("a canary needs a weight: the percent of traffic the challenger answers, from 1 to 99")
    if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= 99:
        raise ValueError(
            f"the weight must be a whole percent from 1 to 99, got {weight!r} (0 is no deployment, 100 a promotion)"
        )
    return weight


def _delivery_mode(mode: DeliveryMode | str) -> DeliveryMode:
    try:
        return DeliveryMode(mode)
    except ValueError:
        known = ", ".join(m.value for m in DeliveryMode)
        raise ValueError(f"unknown delivery mode {mode!r}: one of {known}") from None


class Registry:
    def __init__(
        self,
        table: Table,
        actor: str = "loopml",
        anchor: AuditAnchor | None = None,
        events: EventPublisher | None = None,
    ) -> None:
        """`anchor`, when given, receives the audit chain's head after every commit (see `audit_anchor`): every
        registry that writes should have one, else a truncated chain with a rewritten head goes unnoticed. `events`,
        when given, gets each model version and alias change as an EventBridge event (`adapters.events`): written to
        the outbox in the change's own transaction, published after it, and delivered later if that fails."""
        self.table = table
        self.actor = actor
        self.anchor = anchor
        self.events = events

    # -- the one write path -------------------------------------------------------------------------------------

    def _commit(self, puts: Sequence[Write], events: list[Event]) -> list[AuditRecord]:
        """Write `puts` and an audit record per event in one transaction, retrying when another writer got the head."""
        for _ in range(COMMIT_ATTEMPTS):
            head = self.table.get(AUDIT_PK, AUDIT_HEAD_SK)
            seq = int(head["seq"]) if head else 0
            prev_hash = str(head["hash"]) if head else GENESIS_HASH
            records: list[AuditRecord] = []
            audit_puts: list[Put] = []
            for event in events:
                seq += 1
                body: dict[str, Any] = {
                    "seq": seq,
                    "at": iso(),
                    "actor": self.actor,
                    "action": event.action,
                    "subject": event.subject,
                    "details": event.details,
                    "prev_hash": prev_hash,
                }
                record = AuditRecord(**body, hash=audit_hash(body))
                records.append(record)
                audit_puts.append(Put(_doc_item(AUDIT_PK, _audit_sk(seq), record.model_dump()), if_absent=True))
                prev_hash = record.hash
            outgoing = [e for e in map(_bus_event, records) if e is not None] if self.events is not None else []
            outbox = [Put(_doc_item(OUTBOX_PK, _event_sk(e.seq), asdict(e)), if_absent=True) for e in outgoing]
            head_item: Item = {"pk": AUDIT_PK, "sk": AUDIT_HEAD_SK, "seq": seq, "hash": prev_hash}
            head_put = Put(head_item, if_equals={"seq": int(head["seq"])}) if head else Put(head_item, if_absent=True)
            try:
                self.table.transact([*puts, *audit_puts, *outbox, head_put])
            except ConflictError:
                if self._domain_conflict(puts):
                    raise
                continue
            self._checkpoint(records[-1])
            self._publish(outgoing)
            return records
        raise ConflictError("the audit trail is busy; try again")

    def _checkpoint(self, head: AuditRecord) -> None:
        """Anchor the new head outside the table. The change is committed whatever happens here: a checkpoint that
        fails is logged, and `verify_audit` reports the records after the newest checkpoint as not yet anchored (the
        next commit's checkpoint anchors them, as it vouches for the whole chain up to its head)."""
        if self.anchor is None:
            return
        try:
            self.anchor.checkpoint(head.seq, head.hash, head.at)
        except Exception:
            _log.exception("audit checkpoint of record %d failed; the change itself is committed", head.seq)

    def _publish(self, outgoing: list[RegistryEvent]) -> None:
        """Put the committed change's events on the bus and take them out of the outbox. A failure is logged: the
        change stands, and `deliver_events` (the hourly check calls it) publishes what the outbox still holds."""
        if not outgoing or self.events is None:
            return
        try:
            self.events.publish(outgoing)
        except Exception:
            _log.exception("registry events %s not published yet; they wait in the outbox", [e.seq for e in outgoing])
            return
        for event in outgoing:
            self.table.delete(OUTBOX_PK, _event_sk(event.seq))

    def pending_events(self) -> list[RegistryEvent]:
        """Events of committed changes not published yet, oldest first."""
        return [RegistryEvent(**_doc(item)) for item in self.table.query(OUTBOX_PK, EVENT_PREFIX)]

    def deliver_events(self) -> int:
        """Publish what the outbox holds (at least once: a consumer drops a repeated `audit_seq`); returns how many."""
        pending = self.pending_events()
        if pending and self.events is not None:
            self.events.publish(pending)
            for event in pending:
                self.table.delete(OUTBOX_PK, _event_sk(event.seq))
        return len(pending)

    def _domain_conflict(self, puts: Sequence[Write]) -> bool:
        """True when the conflict is in the change itself (not just a race on the audit head)."""
        for put in puts:
            current = self.table.get(*put.key)
            if put.if_absent and current is not None:
                return True
            if put.if_equals and (current is None or any(current.get(k) != v for k, v in put.if_equals.items())):
                return True
        return False

    # -- datasets -------------------------------------------------------------------------------------------------

    def declare_dataset(self, contract: DatasetContract) -> tuple[Dataset, bool]:
        """Declare a dataset or a new version of its contract. Returns (dataset, changed)."""
        now = iso()
        meta = self.table.get(_dataset_pk(contract.name), "META")
        fingerprint = contract.fingerprint()
        if meta is not None:
            current = Dataset(**_doc(meta))
            if current.contract_fingerprint == fingerprint:
                return current, False
            dataset = current.model_copy(
                update={
                    "contract": contract.model_dump(mode="json"),
                    "contract_version": current.contract_version + 1,
                    "contract_fingerprint": fingerprint,
                    "updated_at": now,
                }
            )
            meta_put = Put(self._dataset_meta(dataset), if_equals={"contract_version": current.contract_version})
            puts = [meta_put]
        else:
            dataset = Dataset(
                name=contract.name,
                contract=contract.model_dump(mode="json"),
                contract_version=1,
                contract_fingerprint=fingerprint,
                created_at=now,
                updated_at=now,
            )
            puts = [
                Put(self._dataset_meta(dataset), if_absent=True),
                Put({"pk": DATASETS_INDEX_PK, "sk": contract.name}, if_absent=True),
            ]
        contract_item = _doc_item(
            _dataset_pk(contract.name), f"CONTRACT#{dataset.contract_version:06d}", dataset.contract
        )
        puts.append(Put(contract_item, if_absent=True))
        event = Event(
            "dataset.declared",
            f"dataset/{contract.name}",
            {"contract_version": dataset.contract_version, "fingerprint": fingerprint},
        )
        self._commit(puts, [event])
        return dataset, True

    @staticmethod
    def _dataset_meta(dataset: Dataset) -> Item:
        return _doc_item(
            _dataset_pk(dataset.name),
            "META",
            dataset.model_dump(),
            contract_version=dataset.contract_version,
            latest_version=dataset.latest_version,
        )

    def dataset(self, name: str) -> Dataset:
        meta = self.table.get(_dataset_pk(name), "META")
        if meta is None:
            raise NotFoundError(f"dataset '{name}' is not declared; declare it with `loopml datasets create`")
        return Dataset(**_doc(meta))

    def contract(self, name: str) -> DatasetContract:
        return DatasetContract.model_validate(self.dataset(name).contract)

    def datasets(self) -> list[Dataset]:
        return [self.dataset(str(item["sk"])) for item in self.table.query(DATASETS_INDEX_PK)]

    def register_dataset_version(
        self,
        name: str,
        *,
        upload: UploadOutcome,
        build: Callable[[int], DatasetVersion],
        execution_for: Callable[[int], str | None] = lambda number: None,
    ) -> UploadOutcome:
        """Register the next version of a dataset from an accepted upload, once per object version and per content.

        `upload` is the accepted outcome without its version number (its `sha256` is the content's). `build(version)`
        makes the record for the version number it is given (it may store the data there first);
        `execution_for(version)` names the training run the version will start, if any, so the outcome records it.
        Returns the upload's outcome: accepted with the new version; the first outcome again for an object version
        seen before (a redelivered S3 event registers nothing new); or duplicate, naming the version with the same
        content.
        """
        pk = _dataset_pk(name)
        for _ in range(COMMIT_ATTEMPTS):
            prior = self.upload(name, upload.source_id)
            if prior is not None:
                return prior
            same = self.table.get(pk, _sha_sk(str(upload.sha256)))
            if same is not None:
                number = int(same["version"])
                duplicate = upload.model_copy(
                    update={
                        "status": UploadStatus.DUPLICATE,
                        "dataset_version": number,
                        "execution": None,
                        "summary": f"same content (sha256 {str(upload.sha256)[:12]}) as version {number}: "
                        "no new version, nothing trained",
                    }
                )
                return self.record_upload(duplicate)
            dataset = self.dataset(name)
            number = dataset.latest_version + 1
            record = build(number)
            outcome = upload.model_copy(
                update={"status": UploadStatus.ACCEPTED, "dataset_version": number, "execution": execution_for(number)}
            )
            updated = dataset.model_copy(update={"latest_version": number, "updated_at": record.created_at})
            puts = [
                Put(self._dataset_meta(updated), if_equals={"latest_version": dataset.latest_version}),
                Put(_doc_item(pk, _version_sk(number), record.model_dump()), if_absent=True),
                Put({"pk": pk, "sk": _sha_sk(record.sha256), "version": number}, if_absent=True),
                Put(_doc_item(pk, _upload_sk(upload.source_id), outcome.model_dump()), if_absent=True),
            ]
            event = Event(
                "dataset.version.registered",
                f"dataset/{name}/v{number}",
                {
                    "sha256": record.sha256,
                    "rows": record.rows,
                    "format": record.format,
                    "object": record.object.uri,
                    "source": upload.source_id,
                },
            )
            try:
                self._commit(puts, [event])
                return outcome
            except ConflictError:
                continue  # another upload took this number, this source or this content; look again
        raise ConflictError(f"could not register a version of '{name}': too many concurrent uploads")

    def record_upload(self, outcome: UploadOutcome) -> UploadOutcome:
        """Record a quarantined, duplicate or failed upload with its audit record, in one transaction.

        The first outcome of an object version stands: recording another returns the one already there.
        """
        details = outcome.model_dump(mode="json", exclude_none=True, exclude={"dataset", "status", "at"})
        event = Event(f"dataset.upload.{outcome.status}", f"dataset/{outcome.dataset}", details)
        return self._commit_outcome(outcome, [], event)

    def _commit_outcome(self, outcome: UploadOutcome, puts: list[Put], event: Event) -> UploadOutcome:
        """Commit an upload's first outcome with `puts` and its audit record; if it has one already, return that."""
        item = _doc_item(_dataset_pk(outcome.dataset), _upload_sk(outcome.source_id), outcome.model_dump())
        try:
            self._commit([Put(item, if_absent=True), *puts], [event])
        except ConflictError:
            existing = self.upload(outcome.dataset, outcome.source_id)
            if existing is None:
                raise
            return existing
        return outcome

    def record_labels(
        self, outcome: UploadOutcome, counts: Mapping[tuple[int, str], PerformanceCounts]
    ) -> UploadOutcome:
        """Record an accepted label file, the performance counts it adds per (model version, day), and its audit
        record, in one transaction. A redelivered file changes nothing and gets its first outcome back."""
        puts = _performance_puts(outcome.dataset, outcome.source_id, "", counts)
        details = {
            "source_key": outcome.source_key,
            "source_version_id": outcome.source_version_id,
            "labels": outcome.rows,
            "joined": {f"v{v} {d}": c.rows for (v, d), c in sorted(counts.items())},
        }
        event = Event("dataset.labels.accepted", f"dataset/{outcome.dataset}", details)
        return self._commit_outcome(outcome, self._beyond_room(puts), event)

    def _beyond_room(self, puts: list[Put]) -> list[Put]:
        """A transaction takes 100 writes: write what does not fit first, each item on its own (they are keyed so
        that a retry finds them written and the counts still land once), and return what does."""
        for start in range(TRANSACTION_ROOM, len(puts), TRANSACTION_ROOM):
            for put in puts[start : start + TRANSACTION_ROOM]:
                with contextlib.suppress(ConflictError):
                    self.table.transact([put])
        return puts[:TRANSACTION_ROOM]

    def performance(self, model: str, version: int, since: str = "") -> dict[str, PerformanceCounts]:
        """A model version's live performance counts per day of prediction, every label file merged; only the days
        from `since` (an ISO date or timestamp; its day counts whole) when given. Each label file adds one item per
        day it covers, so a bound keeps the read to the days asked for however long the model has served."""
        from loopml_core.performance import PerformanceCounts

        merged: dict[str, PerformanceCounts] = {}
        for item in self.table.query(_performance_pk(model, version), sk_from=since[:10] or None):
            document = _doc(item)
            counted = PerformanceCounts.from_json(document["counts"])
            day = str(document["day"])
            merged[day] = merged[day] + counted if day in merged else counted
        return merged

    def upload(self, dataset: str, source_id: str) -> UploadOutcome | None:
        """The outcome of one uploaded object version (`<key>@<version id>`), if it has one yet."""
        item = self.table.get(_dataset_pk(dataset), _upload_sk(source_id))
        return UploadOutcome(**_doc(item)) if item is not None else None

    def uploads(self, dataset: str) -> list[UploadOutcome]:
        """Every upload's outcome for a dataset (`_undeclared` for keys that name none), in key order."""
        return [UploadOutcome(**_doc(i)) for i in self.table.query(_dataset_pk(dataset), "UPLOAD#")]

    def dataset_version(self, name: str, version: int) -> DatasetVersion:
        item = self.table.get(_dataset_pk(name), _version_sk(version))
        if item is None:
            raise NotFoundError(f"dataset '{name}' has no version {version}")
        return DatasetVersion(**_doc(item))

    def dataset_versions(self, name: str) -> list[DatasetVersion]:
        return [DatasetVersion(**_doc(i)) for i in self.table.query(_dataset_pk(name), "V#")]

    def latest_dataset_version(self, name: str) -> DatasetVersion | None:
        items = self.table.query(_dataset_pk(name), "V#", newest_first=True, limit=1)
        return DatasetVersion(**_doc(items[0])) if items else None

    # -- models ---------------------------------------------------------------------------------------------------

    def register_model_version(
        self, model: str, execution: str, build: Any, *, promote: bool, trigger: str
    ) -> tuple[ModelVersion, bool]:
        """Register the next version of a model from a pipeline run; move `champion` to it when `promote`.

        `build(version) -> ModelVersion`. Idempotent per execution: a retried step returns the version it registered.
        """
        for _ in range(COMMIT_ATTEMPTS):
            run_item = self.table.get(_model_pk(model), f"RUN#{execution}")
            if run_item is not None:
                run = PipelineRun(**_doc(run_item))
                if run.model_version is None:
                    raise ConflictError(f"run {execution} already finished without registering a version")
                return self.model_version(model, run.model_version), False
            meta = self.table.get(_model_pk(model), "META")
            latest = int(meta["latest_version"]) if meta else 0
            record: ModelVersion = build(latest + 1)
            name, number = record.model, record.version
            meta_item: Item = {"pk": _model_pk(name), "sk": "META", "latest_version": number}
            puts = [
                Put(meta_item, if_equals={"latest_version": latest}) if meta else Put(meta_item, if_absent=True),
                Put(_doc_item(_model_pk(name), _version_sk(number), record.model_dump()), if_absent=True),
                Put(
                    self._run_item(
                        PipelineRun(
                            model=name,
                            execution=record.execution,
                            status=RunStatus.SUCCEEDED,
                            trigger=trigger,
                            dataset_version=record.dataset_version,
                            model_version=number,
                            finished_at=record.created_at,
                        )
                    ),
                    if_absent=True,
                ),
            ]
            if not meta:
                first = RegisteredModel(name=name, created_at=record.created_at, updated_at=record.created_at)
                puts.append(Put(_doc_item(MODELS_INDEX_PK, name, first.model_dump()), if_absent=True))
            events = [
                Event(
                    "model.version.registered",
                    f"model/{name}/v{number}",
                    {
                        "execution": record.execution,
                        "dataset_version": record.dataset_version,
                        "metrics": record.metrics,
                        "artifact": record.artifact.uri,
                        "artifact_version_id": record.artifact.version_id,
                        "decision": record.decision,
                    },
                )
            ]
            if promote:
                previous = self.champion(name)
                alias_item = _doc_item(
                    _model_pk(name),
                    _alias_sk(CHAMPION),
                    Champion(model=name, version=number, since=record.created_at).model_dump(),
                    version=number,
                )
                puts.append(
                    Put(alias_item, if_equals={"version": previous.version})
                    if previous
                    else Put(alias_item, if_absent=True)
                )
                events.append(
                    Event(
                        "model.alias.moved",
                        _alias_subject(name, CHAMPION),
                        {"from": previous.version if previous else None, "to": number, "reason": record.decision},
                    )
                )
            try:
                self._commit(puts, events)
                return record, True
            except ConflictError:
                continue
        raise ConflictError("could not register the model version: too many concurrent writers")

    @staticmethod
    def _run_item(run: PipelineRun) -> Item:
        return _doc_item(_model_pk(run.model), f"RUN#{run.execution}", run.model_dump(), status=run.status.value)

    def record_run_failure(
        self, model: str, execution: str, *, error: str, cause: str, trigger: str, dataset_version: int | None
    ) -> tuple[PipelineRun, bool]:
        """Record a failed run and audit it; the champion is untouched. Idempotent per execution."""
        existing = self.table.get(_model_pk(model), f"RUN#{execution}")
        if existing is not None:
            return PipelineRun(**_doc(existing)), False
        run = PipelineRun(
            model=model,
            execution=execution,
            status=RunStatus.FAILED,
            trigger=trigger,
            dataset_version=dataset_version,
            error=error,
            cause=cause[:2000],
            finished_at=iso(),
        )
        event = Event("pipeline.run.failed", f"model/{model}/run/{execution}", {"error": error, "cause": cause[:500]})
        self._commit([Put(self._run_item(run), if_absent=True)], [event])
        return run, True

    def runs(self, model: str) -> list[PipelineRun]:
        return [PipelineRun(**_doc(i)) for i in self.table.query(_model_pk(model), "RUN#")]

    def model_version(self, model: str, version: int) -> ModelVersion:
        return ModelVersion(**_doc(self._version_item(model, version)))

    def model_versions(self, model: str) -> list[ModelVersion]:
        return [ModelVersion(**_doc(i)) for i in self.table.query(_model_pk(model), "V#")]

    def models(self) -> list[str]:
        return [str(item["sk"]) for item in self.table.query(MODELS_INDEX_PK)]

    # -- the registry's vocabulary: registered models, tags, aliases, the version lifecycle ------------------------

    def registered_models(self) -> list[RegisteredModel]:
        """Every registered model with its description and tags, in one Query (they live on the models index)."""
        return [_registered_model(item) for item in self.table.query(MODELS_INDEX_PK)]

    def registered_model(self, name: str) -> RegisteredModel:
        return _registered_model(self._model_index_item(name))

    def _model_index_item(self, name: str) -> Item:
        item = self.table.get(MODELS_INDEX_PK, name)
        if item is None:
            raise NotFoundError(f"no model '{name}' is registered")
        return item

    def describe_model(self, name: str, description: str) -> RegisteredModel:
        """Set the model's description (at most MAX_DESCRIPTION_CHARS), with its audit record."""
        if len(description) > MAX_DESCRIPTION_CHARS:
            raise ValueError(f"a description holds at most {MAX_DESCRIPTION_CHARS} characters, not {len(description)}")
        return self._change_model(
            name,
            lambda m: m.model_copy(update={"description": description}),
            "model.described",
            {"description": description},
        )

    def set_model_tag(self, name: str, key: str, value: str) -> RegisteredModel:
        _check_tag(key, value)
        return self._change_model(
            name,
            lambda m: m.model_copy(update={"tags": {**m.tags, key: value}}),
            "model.tag.set",
            {"key": key, "value": value},
        )

    def delete_model_tag(self, name: str, key: str) -> RegisteredModel:
        def without(model: RegisteredModel) -> RegisteredModel:
            if key not in model.tags:
                raise NotFoundError(f"model '{name}' has no tag '{key}'")
            return model.model_copy(update={"tags": {k: v for k, v in model.tags.items() if k != key}})

        return self._change_model(name, without, "model.tag.deleted", {"key": key})

    def _change_model(
        self, name: str, change: Callable[[RegisteredModel], RegisteredModel], action: str, details: dict[str, Any]
    ) -> RegisteredModel:
        for _ in range(COMMIT_ATTEMPTS):
            item = self._model_index_item(name)
            changed = change(_registered_model(item)).model_copy(update={"updated_at": iso()})
            try:
                self._commit(
                    [_replacing(item, _doc_item(MODELS_INDEX_PK, name, changed.model_dump()))],
                    [Event(action, f"model/{name}", details)],
                )
                return changed
            except ConflictError:
                continue
        raise ConflictError(f"model '{name}' kept changing under this write: try again")

    def set_version_tag(self, name: str, version: int, key: str, value: str) -> ModelVersion:
        _check_tag(key, value)
        return self._change_version(
            name,
            version,
            lambda v: v.model_copy(update={"tags": {**v.tags, key: value}}),
            "model.version.tag.set",
            {"key": key, "value": value},
        )

    def delete_version_tag(self, name: str, version: int, key: str) -> ModelVersion:
        def without(record: ModelVersion) -> ModelVersion:
            if key not in record.tags:
                raise NotFoundError(f"v{version} of '{name}' has no tag '{key}'")
            return record.model_copy(update={"tags": {k: v for k, v in record.tags.items() if k != key}})

        return self._change_version(name, version, without, "model.version.tag.deleted", {"key": key})

    def transition_version(self, name: str, version: int, status: VersionStatus | str, reason: str) -> ModelVersion:
        """Move a version along its lifecycle (`ALLOWED_TRANSITIONS`), with the reason in its audit record. A version
        an alias names (champion, challenger or any other) cannot be archived: move or delete the alias first."""
        target = VersionStatus(status)

        def moved(record: ModelVersion) -> ModelVersion:
            if target not in ALLOWED_TRANSITIONS[record.status]:
                allowed = ", ".join(sorted(ALLOWED_TRANSITIONS[record.status])) or "none: it is final"
                raise ValueError(f"v{version} of '{name}' is {record.status}; it can become {allowed}, not {target}")
            naming = sorted(a for a, v in self.aliases(name).items() if v == version)
            if target is not VersionStatus.READY and naming:
                raise ValueError(f"v{version} of '{name}' is named by {', '.join(naming)}: move those aliases first")
            details["from"] = str(record.status)  # the status this very change moves from
            return record.model_copy(update={"status": target})

        details: dict[str, Any] = {"to": str(target), "reason": reason}
        return self._change_version(name, version, moved, "model.version.status", details)

    def _change_version(
        self,
        name: str,
        version: int,
        change: Callable[[ModelVersion], ModelVersion],
        action: str,
        details: dict[str, Any],
    ) -> ModelVersion:
        for _ in range(COMMIT_ATTEMPTS):
            item = self._version_item(name, version)
            changed = change(ModelVersion(**_doc(item)))
            try:
                self._commit(
                    [_replacing(item, _doc_item(_model_pk(name), _version_sk(version), changed.model_dump()))],
                    [Event(action, f"model/{name}/v{version}", details)],
                )
                return changed
            except ConflictError:
                continue
        raise ConflictError(f"v{version} of '{name}' kept changing under this write: try again")

    def aliases(self, name: str) -> dict[str, int]:
        """Every alias of the model and the version it names: champion, challenger and those users set."""
        return {
            str(item["sk"]).removeprefix(ALIAS_PREFIX): int(item["version"])
            for item in self.table.query(_model_pk(name), ALIAS_PREFIX)
        }

    def set_alias(self, name: str, alias: str, version: int, reason: str = "") -> ModelAlias:
        """Point a user-defined alias at a READY version (champion and challenger move by promote, deploy and
        rollback, which keep serving consistent). Setting it to where it points already changes nothing."""
        _check_alias(alias)
        version_item = self._version_item(name, version)
        record = ModelVersion(**_doc(version_item))
        if record.status is not VersionStatus.READY:
            raise ValueError(f"v{version} of '{name}' is {record.status}: only a READY version can have an alias")
        current = self.table.get(_model_pk(name), _alias_sk(alias))
        if current is not None and int(current["version"]) == version:
            return ModelAlias(**_doc(current))
        previous = int(current["version"]) if current is not None else None
        named = ModelAlias(model=name, alias=alias, version=version, since=iso())
        item = _doc_item(_model_pk(name), _alias_sk(alias), named.model_dump(), version=version)
        put = Put(item, if_absent=True) if previous is None else Put(item, if_equals={"version": previous})
        # The version must still be the READY one read above when the alias lands: an archive racing this write
        # changes its document and cancels the transaction.
        ready = Check(_model_pk(name), _version_sk(version), {"doc": str(version_item["doc"])})
        event = Event(
            "model.alias.set", _alias_subject(name, alias), {"from": previous, "to": version, "reason": reason}
        )
        self._commit([put, ready], [event])
        return named

    def delete_alias(self, name: str, alias: str, reason: str = "") -> int:
        """Remove a user-defined alias; returns the version it named."""
        _check_alias(alias)
        current = self.table.get(_model_pk(name), _alias_sk(alias))
        if current is None:
            raise NotFoundError(f"model '{name}' has no alias '{alias}'")
        version = int(current["version"])
        event = Event("model.alias.deleted", _alias_subject(name, alias), {"from": version, "reason": reason})
        self._commit([Delete(_model_pk(name), _alias_sk(alias), {"version": version})], [event])
        return version

    # -- approval before production ---------------------------------------------------------------------------------

    def request_approval(
        self, name: str, version: int, *, token: str, execution: str, deadline: str
    ) -> tuple[ApprovalRequest, bool]:
        """Record the task token a PENDING_APPROVAL version's pipeline run waits on. Returns (request, first): the
        first request is audited; a retried step brings a new token, which replaces the old one unaudited."""
        record = self.model_version(name, version)
        if record.status is not VersionStatus.PENDING_APPROVAL:
            raise ValueError(f"v{version} of '{name}' is {record.status}: only a PENDING_APPROVAL version waits")
        previous = self.approval_request(name, version)
        request = ApprovalRequest(
            model=name, version=version, execution=execution, token=token, requested_at=iso(), deadline=deadline
        )
        item = _doc_item(_model_pk(name), _approval_sk(version), request.model_dump())
        if previous is not None:
            if previous.token != token:
                self.table.transact([Put(item)])
            return (request if previous.token != token else previous), False
        details = {"execution": execution, "deadline": deadline}
        self._commit(
            [Put(item, if_absent=True)],
            [Event("model.version.approval.requested", f"model/{name}/v{version}", details)],
        )
        return request, True

    def approval_request(self, name: str, version: int) -> ApprovalRequest | None:
        item = self.table.get(_model_pk(name), _approval_sk(version))
        return ApprovalRequest(**_doc(item)) if item is not None else None

    def approve(self, name: str, version: int, reason: str) -> ApprovalDecision:
        """PENDING_APPROVAL -> READY, with the approver (this registry's actor) and reason in the audit record. When
        the version's evaluation promoted it and the champion is still the one it was judged against, it becomes
        champion in the same transaction (ending any deployment in progress); otherwise it stays beside it, READY."""
        for _ in range(COMMIT_ATTEMPTS):
            item = self._version_item(name, version)
            record = ModelVersion(**_doc(item))
            _must_wait(record)
            approved = record.model_copy(update={"status": VersionStatus.READY})
            puts: list[Write] = [
                _replacing(item, _doc_item(_model_pk(name), _version_sk(version), approved.model_dump()))
            ]
            request = self.approval_request(name, version)
            if request is not None:
                puts.append(Delete(_model_pk(name), _approval_sk(version)))
            details = {"from": str(record.status), "to": "READY", "reason": reason}
            events = [Event("model.version.approved", f"model/{name}/v{version}", details)]
            champion_item, challenger_item = self._alias_items(name)
            current = int(champion_item["version"]) if champion_item else None
            champion = record.promoted and current == record.champion_version
            if not record.promoted:
                note = f"v{version} is READY; its evaluation did not promote it, so the champion is unchanged"
            elif not champion:
                note = (
                    f"v{version} is READY but not champion: it was judged against "
                    f"{_version_name(record.champion_version)} and the champion is {_version_name(current)} now; "
                    f"deploy it beside the champion to compare (`loopml models deploy {name} --version {version}`)"
                )
            else:
                note = f"v{version} is READY and champion"
                alias = _doc_item(
                    _model_pk(name),
                    _alias_sk(CHAMPION),
                    Champion(model=name, version=version, since=iso()).model_dump(),
                    version=version,
                )
                puts.append(
                    Put(alias, if_absent=True) if current is None else Put(alias, if_equals={"version": current})
                )
                events.append(
                    Event(
                        "model.alias.moved",
                        _alias_subject(name, CHAMPION),
                        {"from": current, "to": version, "reason": f"approved: {reason}"},
                    )
                )
                if challenger_item is not None:
                    ended = Deployment(**_doc(challenger_item))
                    puts.append(self._end(challenger_item))
                    events.append(self._ended_event(ended, current, f"v{version} approved as champion"))
            try:
                self._commit(puts, events)
            except ConflictError:
                continue
            return ApprovalDecision(version=approved, champion=champion, note=note, request=request)
        raise ConflictError(f"v{version} of '{name}' kept changing under this approval: try again")

    def reject(self, name: str, version: int, reason: str) -> ApprovalDecision:
        """PENDING_APPROVAL -> REJECTED (final), with who and why in the audit record."""
        item = self._version_item(name, version)
        record = ModelVersion(**_doc(item))
        _must_wait(record)
        rejected = record.model_copy(update={"status": VersionStatus.REJECTED})
        puts: list[Write] = [_replacing(item, _doc_item(_model_pk(name), _version_sk(version), rejected.model_dump()))]
        request = self.approval_request(name, version)
        if request is not None:
            puts.append(Delete(_model_pk(name), _approval_sk(version)))
        details = {"from": str(record.status), "to": "REJECTED", "reason": reason}
        self._commit(puts, [Event("model.version.rejected", f"model/{name}/v{version}", details)])
        return ApprovalDecision(version=rejected, champion=False, note=f"v{version} is REJECTED", request=request)

    def _version_item(self, name: str, version: int) -> Item:
        item = self.table.get(_model_pk(name), _version_sk(version))
        if item is None:
            raise NotFoundError(f"model '{name}' has no version {version}")
        return item

    def champion(self, model: str) -> Champion | None:
        item = self.table.get(_model_pk(model), _alias_sk(CHAMPION))
        return Champion(**_doc(item)) if item else None

    def champion_version(self, model: str) -> ModelVersion:
        """The champion's model version. Raises NotFoundError for an unknown model or one with no champion yet."""
        champion = self.champion(model)
        if champion is None:
            raise self._no_champion(model)
        return self.model_version(model, champion.version)

    def _no_champion(self, model: str) -> NotFoundError:
        if self.table.get(_model_pk(model), "META") is None:
            return NotFoundError(f"model '{model}' does not exist")
        return NotFoundError(f"model '{model}' has no champion yet")

    def set_champion(self, model: str, version: int, reason: str) -> Champion:
        """Point `champion` at an existing version (a rollback or a manual promotion), audited.

        A deployment in progress ends in the same transaction: after a rollback one known version answers everything
        (and the challenger could not stay the champion's challenger if it became the champion).
        """
        return self._move_champion(model, version, reason)[0]

    def _move_champion(self, model: str, version: int, reason: str) -> tuple[Champion, Deployment | None]:
        target = self.model_version(model, version)
        _must_serve(target)
        champion_item, challenger_item = self._alias_items(model)
        previous = int(champion_item["version"]) if champion_item else None
        champion = Champion(model=model, version=target.version, since=iso())
        alias_item = _doc_item(_model_pk(model), _alias_sk(CHAMPION), champion.model_dump(), version=version)
        if previous is None:
            puts: list[Write] = [Put(alias_item, if_absent=True)]
        else:
            puts = [Put(alias_item, if_equals={"version": previous})]
        events = [
            Event(
                "model.alias.moved",
                _alias_subject(model, CHAMPION),
                {"from": previous, "to": version, "reason": reason},
            )
        ]
        ended = None
        if challenger_item is not None:
            ended = Deployment(**_doc(challenger_item))
            puts.append(self._end(challenger_item))
            events.append(self._ended_event(ended, previous, f"champion set to v{version}: {reason}"))
        self._commit(puts, events)
        return champion, ended

    # -- progressive delivery -------------------------------------------------------------------------------------

    def _alias_items(self, model: str) -> tuple[Item | None, Item | None]:
        """The champion's and the challenger's alias items, in one Query on the model's `ALIAS#` items."""
        champion = challenger = None
        for item in self.table.query(_model_pk(model), ALIAS_PREFIX):
            if item["sk"] == _alias_sk(CHAMPION):
                champion = item
            elif item["sk"] == _alias_sk(CHALLENGER):
                challenger = item
        return champion, challenger

    def serving_state(self, model: str) -> ServingState:
        """The champion version and the deployment in progress (or None): what the predict path routes on.

        One DynamoDB Query (the model's `ALIAS#` items, a few hundred bytes: one read unit), so a container that
        refreshes it every few seconds makes the same single call it made for the champion alone. Raises
        NotFoundError for an unknown model or one with no champion yet (that path alone reads once more, to say
        which).
        """
        champion, challenger = self._alias_items(model)
        if champion is None:
            raise self._no_champion(model)
        deployment = Deployment(**_doc(challenger)) if challenger is not None else None
        return ServingState(model=model, champion=int(champion["version"]), deployment=deployment)

    def deployment(self, model: str) -> Deployment | None:
        """The deployment in progress, if any."""
        item = self.table.get(_model_pk(model), _alias_sk(CHALLENGER))
        return Deployment(**_doc(item)) if item else None

    def deploy(
        self, model: str, version: int, mode: DeliveryMode | str, weight: int | None = None, reason: str = ""
    ) -> tuple[Deployment, bool]:
        """Deploy `version` as the challenger beside the champion, or change the mode or weight of its deployment.

        Returns (deployment, changed). The same call again changes nothing and writes no audit record (a retried
        command is harmless). Raises ValueError for a bad mode or weight, NotFoundError for an unknown version or a
        model without a champion, ValueError when `version` is the champion, and ConflictError while another
        version's deployment is in progress (promote it or roll it back first), or when the aliases changed between
        the read and the write (nothing is written then). The challenger alias, its audit record and a check that
        the champion is still the one validated against are one transaction.
        """
        mode = _delivery_mode(mode)
        weight = deployment_weight(mode, weight)
        _must_serve(self.model_version(model, version))
        champion_item, challenger_item = self._alias_items(model)
        if champion_item is None:
            raise self._no_champion(model)
        champion = int(champion_item["version"])
        if version == champion:
            raise ValueError(f"v{version} is already the champion of '{model}': deploy another version beside it")
        current = Deployment(**_doc(challenger_item)) if challenger_item is not None else None
        if current is not None and current.version != version:
            raise ConflictError(
                f"v{current.version} of '{model}' is deployed already ({current.describe()}): promote it or "
                f"roll it back before deploying v{version}"
            )
        if current is not None and (current.mode, current.weight) == (mode, weight):
            return current, False
        now = iso()
        deployment = Deployment(
            model=model,
            version=version,
            mode=mode,
            weight=weight,
            since=current.since if current else now,
            changed_at=now,
            by=self.actor,
            reason=reason,
        )
        context = {"champion": champion, "reason": reason}
        if current is None:
            guard = Put(self._challenger_item(deployment), if_absent=True)
            action, details = "started", {"version": version, "mode": mode.value, "weight": weight, **context}
        else:
            assert challenger_item is not None
            guard = Put(self._challenger_item(deployment), if_equals=self._unchanged(challenger_item))
            action, details = (
                "changed",
                {
                    "version": version,
                    "from": {"mode": current.mode.value, "weight": current.weight},
                    "to": {"mode": mode.value, "weight": weight},
                    **context,
                },
            )
        event = Event(f"model.deployment.{action}", _alias_subject(model, CHALLENGER), details)
        check = Check(_model_pk(model), _alias_sk(CHAMPION), {"version": champion})
        try:
            self._commit([guard, check], [event])
        except ConflictError as error:
            # Not retried on purpose: a ramp must not revive a deployment that a rollback ended meanwhile.
            raise ConflictError(
                f"the aliases of '{model}' changed while deploying v{version}; nothing was deployed: look again with "
                f"`loopml models show {model}`"
            ) from error
        return deployment, True

    def promote(self, model: str, reason: str = "") -> tuple[Champion, Deployment]:
        """Make the challenger the champion and end its deployment, in one transaction with their audit records.

        Returns (new champion, the deployment that ended). Raises NotFoundError when no deployment is in progress
        (a retried promotion that went through finds none, and says which version is champion), and ConflictError
        when the deployment changed between the read and the write: it promotes only the deployment it read.
        """
        champion_item, challenger_item = self._alias_items(model)
        if champion_item is None:
            raise self._no_champion(model)
        previous = int(champion_item["version"])
        if challenger_item is None:
            raise NotFoundError(
                f"'{model}' has no deployment in progress to promote (v{previous} is champion); deploy a "
                f"challenger first with `loopml models deploy {model} --version V --canary 10`"
            )
        deployment = Deployment(**_doc(challenger_item))
        champion = Champion(model=model, version=deployment.version, since=iso())
        alias_item = _doc_item(_model_pk(model), _alias_sk(CHAMPION), champion.model_dump(), version=champion.version)
        why = reason or f"promoted after {deployment.mode.value}"
        events = [
            Event(
                "model.alias.moved",
                _alias_subject(model, CHAMPION),
                {"from": previous, "to": deployment.version, "reason": why},
            ),
            Event(
                "model.deployment.promoted",
                _alias_subject(model, CHALLENGER),
                self._deployment_details(deployment, previous, why),
            ),
        ]
        try:
            self._commit([Put(alias_item, if_equals={"version": previous}), self._end(challenger_item)], events)
        except ConflictError as error:
            raise ConflictError(
                f"the aliases of '{model}' changed while promoting v{deployment.version}; nothing was promoted: look "
                f"again with `loopml models show {model}`"
            ) from error
        return champion, deployment

    def end_deployment(self, model: str, reason: str = "") -> Deployment | None:
        """Stop sending traffic to the challenger: its alias goes, the champion is untouched. Returns the deployment
        that ended, or None when none was in progress (so a retried rollback is harmless). Ends only the deployment
        it read: if another began meanwhile, ConflictError."""
        champion_item, challenger_item = self._alias_items(model)
        if champion_item is None and challenger_item is None:
            raise self._no_champion(model)
        if challenger_item is None:
            return None
        deployment = Deployment(**_doc(challenger_item))
        champion = int(champion_item["version"]) if champion_item else None
        try:
            self._commit([self._end(challenger_item)], [self._ended_event(deployment, champion, reason)])
        except ConflictError as error:
            now = self.deployment(model)
            if now is None:
                return None  # ended by someone else meanwhile, with its own audit record: what was asked is done
            raise ConflictError(
                f"the deployment of '{model}' changed while ending it (now v{now.version}, {now.describe()}); "
                "nothing was ended: look again"
            ) from error
        return deployment

    def rollback(self, model: str, version: int | None = None, reason: str = "") -> Rollback:
        """Undo, at once: with `version`, point the champion at it (ending any deployment in the same transaction);
        without, end the deployment in progress, leaving the champion where it is. NotFoundError when there is no
        deployment to end and no version was named."""
        if version is not None:
            champion, ended = self._move_champion(model, version, reason or "rollback")
            return Rollback(champion=champion, ended=ended, moved=True)
        ended = self.end_deployment(model, reason or "rollback")
        now = self.champion(model)
        if ended is None or now is None:
            current = f" (v{now.version} is champion and answers all traffic)" if now else ""
            raise NotFoundError(
                f"'{model}' has no deployment in progress{current}: name the version to make champion, e.g. "
                f"`loopml models rollback {model} 1`"
            )
        return Rollback(champion=now, ended=ended, moved=False)

    @staticmethod
    def _challenger_item(deployment: Deployment) -> Item:
        return _doc_item(
            _model_pk(deployment.model),
            _alias_sk(CHALLENGER),
            deployment.model_dump(mode="json"),
            version=deployment.version,
        )

    @staticmethod
    def _unchanged(challenger_item: Item) -> dict[str, str | int]:
        """The condition that the challenger alias is still the very one read. Its whole document, not a counter:
        a deployment that ended and a new one that began meanwhile must not pass for the one read (its `since` and
        `changed_at` differ)."""
        return {"doc": challenger_item["doc"]}

    @classmethod
    def _end(cls, challenger_item: Item) -> Delete:
        """Remove the challenger alias, provided it is still the one read."""
        return Delete(str(challenger_item["pk"]), str(challenger_item["sk"]), cls._unchanged(challenger_item))

    @staticmethod
    def _deployment_details(deployment: Deployment, champion: int | None, reason: str) -> dict[str, Any]:
        return {
            "version": deployment.version,
            "mode": deployment.mode.value,
            "weight": deployment.weight,
            "since": deployment.since,
            "champion": champion,
            "reason": reason,
        }

    def _ended_event(self, deployment: Deployment, champion: int | None, reason: str) -> Event:
        return Event(
            "model.deployment.ended",
            _alias_subject(deployment.model, CHALLENGER),
            self._deployment_details(deployment, champion, reason),
        )

    # -- monitoring -----------------------------------------------------------------------------------------------

    def monitor_state(self, model: str) -> MonitorState:
        item = self.table.get(_model_pk(model), MONITOR_SK)
        return MonitorState(**_doc(item)) if item else MonitorState(model=model)

    def record_check(
        self,
        previous: MonitorState,
        state: MonitorState,
        details: dict[str, Any],
        alert: Alert | None = None,
        late_labels: Mapping[str, Mapping[tuple[int, str], PerformanceCounts]] | None = None,
    ) -> AuditRecord:
        """Move a model's monitoring state, with the check's audit record, its alert (if any) and the performance
        counts of labels it matched late (per label file), in one transaction.

        Conditional on the state still being `previous`: a check that lost a race, or a retry of one that already
        committed, raises ConflictError and changes nothing.
        """
        moved = state.model_copy(update={"revision": previous.revision + 1})
        item = _doc_item(_model_pk(state.model), MONITOR_SK, moved.model_dump(), revision=moved.revision)
        put = Put(item, if_equals={"revision": previous.revision}) if previous.revision else Put(item, if_absent=True)
        counted = [
            p
            for source, counts in sorted((late_labels or {}).items())
            for p in _performance_puts(state.model, source, f"#r{moved.revision}", counts)
        ]
        puts = [put, *self._beyond_room(counted)]
        if alert is not None:
            puts.append(Put(_doc_item(OUTBOX_PK, f"ALERT#{alert.id}", alert.model_dump()), if_absent=True))
        status = details.get("status", "checked")
        event = Event(f"model.monitoring.{status}", f"model/{state.model}", details)
        return self._commit(puts, [event])[0]

    def pending_alerts(self) -> list[Alert]:
        """Alerts recorded by a check and not published yet (the outbox's `ALERT#` items)."""
        return [Alert(**_doc(item)) for item in self.table.query(OUTBOX_PK, "ALERT#")]

    def alert_sent(self, alert: Alert) -> None:
        """Take a published alert out of the outbox. Not audited: the check that raised it is."""
        self.table.delete(OUTBOX_PK, f"ALERT#{alert.id}")

    # -- audit ----------------------------------------------------------------------------------------------------

    def audit_records(self, *subject_prefixes: str) -> list[AuditRecord]:
        """The audit records, oldest first; only those whose subject starts with one of `subject_prefixes` when any
        are given. The chain is read a page at a time and only the records kept are parsed: memory follows what is
        asked for, not the length of the chain."""
        # Documents are compact JSON with sorted keys: a record about a prefix holds `"subject":"<prefix>...`.
        needles = [f'"subject":{json.dumps(prefix)[:-1]}' for prefix in subject_prefixes]
        records = []
        for page in self._audit_pages():
            for item in page:
                if needles and not any(needle in str(item["doc"]) for needle in needles):
                    continue
                record = AuditRecord(**_doc(item))
                if not subject_prefixes or record.subject.startswith(subject_prefixes):
                    records.append(record)
        return records

    def _audit_pages(self) -> Iterator[list[Item]]:
        """The audit records in sort-key order, AUDIT_PAGE at a time."""
        last_sk: str | None = None
        while True:
            if last_sk is None:
                page = self.table.query(AUDIT_PK, AUDIT_RECORD_PREFIX, limit=AUDIT_PAGE)
            else:  # from the last key read, which comes back first and is dropped
                page = self.table.query(AUDIT_PK, sk_from=last_sk, limit=AUDIT_PAGE + 1)
                page = [i for i in page if i["sk"] != last_sk]
            # Records are contiguous in sort-key order: past them (the HEAD item) there are no more.
            page = [i for i in page if str(i["sk"]).startswith(AUDIT_RECORD_PREFIX)]
            if not page:
                return
            yield page
            last_sk = str(page[-1]["sk"])

    def verify_audit(self, anchor: AuditAnchor | None = None) -> AuditVerification:
        """Recompute the chain: every hash, every link, no gap in sequence numbers, and the head at the last record.

        With an anchor (`anchor`, else the registry's own) the chain is also compared with every checkpoint ever
        taken: each must be the table's record at its sequence number, and the chain must reach the newest one.
        That finds what the chain alone cannot: the newest records deleted and the HEAD item rewritten to match, or
        a history rewritten from some record on. Records newer than the newest checkpoint are a warning, not a
        problem (a checkpoint failed, or a commit is being checkpointed right now). Reads a page of records and the
        checkpoints of its sequence numbers at a time, so memory stays bounded however long the chain.
        """
        anchor = anchor or self.anchor
        reads = _AnchorReads(anchor) if anchor is not None else None
        problems: list[str] = []
        prev_hash = GENESIS_HASH
        expected_seq, checked, highest_seq, anchored_to = 1, 0, 0, 0
        for page in self._audit_pages():
            hashes: dict[int, str] = {}
            for item in page:
                checked += 1
                try:
                    record = _doc(item)
                    seq = int(record["seq"])
                except (ValueError, KeyError, TypeError):
                    problems.append(f"record {item.get('sk')} is not a valid audit record")
                    continue
                problems += _record_problems(item, record, expected_seq, prev_hash)
                prev_hash = str(record.get("hash"))
                expected_seq = seq + 1
                hashes[seq] = prev_hash
            if reads is not None and hashes:
                page_to = max(highest_seq, *hashes)
                for checkpoint in reads.checkpoints(highest_seq + 1, page_to):
                    anchored_to = max(anchored_to, checkpoint.seq)
                    problem = _checkpoint_problem(checkpoint, hashes.get(checkpoint.seq))
                    if problem:
                        problems.append(problem)
                highest_seq = page_to
        last_seq = expected_seq - 1
        head = self.table.get(AUDIT_PK, AUDIT_HEAD_SK)
        if head is None and checked:
            problems.append("the audit head is missing")
        elif head is not None and (int(head["seq"]) != last_seq or head["hash"] != prev_hash):
            problems.append(
                f"the chain ends at record {last_seq} but the head says {head['seq']}: records were removed"
            )
        warnings: list[str] = []
        if reads is not None:
            problems += self._removed_tail(reads, last_seq, highest_seq)
            if reads.failure:  # not proof of tampering, but nothing was compared: never "intact"
                problems.append(reads.failure)
            elif last_seq > anchored_to:
                warnings.append(_unanchored(anchored_to, last_seq))
        return AuditVerification(
            ok=not problems, checked=checked, problems=problems, warnings=warnings, anchored_to=anchored_to
        )

    def _removed_tail(self, reads: _AnchorReads, last_seq: int, highest_seq: int) -> list[str]:
        """Checkpoints beyond the chain's end: records were removed, unless they were appended while verifying."""
        beyond = reads.checkpoints(highest_seq + 1)
        if not beyond:
            return []
        newest = beyond[-1]
        appended = self.table.get(AUDIT_PK, _audit_sk(newest.seq))
        if appended is not None and _doc(appended).get("hash") == newest.hash:
            return []  # the chain grew during this check, up to a checkpoint that vouches for it
        removed = (
            f"record {newest.seq} was" if newest.seq == last_seq + 1 else f"records {last_seq + 1}..{newest.seq} were"
        )
        return [
            f"{removed} removed: the chain ends at {last_seq} but checkpoint {newest.seq} exists (taken at {newest.at})"
        ]
