"""Lineage on demand: which model, data and code made a prediction, and which version served a model when.

Two questions, answered from what LoopML records anyway, with nothing written on the request path:

- `find_request` + `trace`: a request id → its capture line(s) in S3 → the model version that answered (and any
  that scored it in shadow) → that version's pipeline run → the dataset version it trained on (object version,
  SHA-256, rows, contract version and fingerprint) → its code version → every audit record about the version
  (registration, status changes, approvals, alias moves and deployments naming it, with actor, time and reason).
- `serving_history` + `serving_at`: the audit trail of a model's `champion` and `challenger` aliases folded into a
  timeline, and the state of that timeline at any instant ("which version was serving at 14:05 last Tuesday?").

Captures are stored by time (`captures/<retention>/<model>/<yyyy>/<mm>/<dd>/<hh>/<batch>.gz`), not by request id,
so finding a request is a bounded search: the days of a window (by default the model's capture retention) are
listed newest first, one LIST per day and retention class, and each batch is streamed through gzip in 1 MB blocks
with a plain substring test for the request id; only the lines that contain it are parsed. The search stops at the
first batch holding the request, once the batch after it (older) no longer does: the lines of one request (a large
request split into several, a challenger's shadow scoring of it) are written within moments of each other.

Plain Python over the `ObjectStore` and `Registry` interfaces: no AWS SDK here.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO

from loopml_core.adapters.object_store import ObjectStore
from loopml_core.capture import CAPTURE_MARKER, CAPTURE_PREFIX, retention_class
from loopml_core.cards import version_audit  # the one definition of "the records about a version"
from loopml_core.clock import utc_now
from loopml_core.contract import RETENTION_DAYS
from loopml_core.errors import NotFoundError
from loopml_core.models import CHALLENGER, CHAMPION, AuditRecord, DatasetVersion, ModelVersion, PipelineRun
from loopml_core.registry import Registry

SCAN_BLOCK_BYTES = 1 << 20  # decompressed bytes tested for the request id at a time; a line is parsed only on a hit
CAPTURE_LATENCY = timedelta(minutes=5)  # Firehose's buffering interval: the newest captures may not be in S3 yet


# -- time -------------------------------------------------------------------------------------------------------------

_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_AGO = re.compile(r"^(\d+)\s*(s|m|h|d|w)(?:\s+ago)?$")
_DAY_AND_TIME = re.compile(
    r"^(today|yesterday|(?:last\s+)?(?:" + "|".join(_WEEKDAYS) + r"))(?:\s+(\d{1,2}):(\d{2})(?::(\d{2}))?)?$"
)


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """An instant from what a person types, in UTC.

    Accepted: an ISO 8601 date or time (`2026-11-17`, `2026-11-17T14:05`, `2026-11-17 14:05:00+01:00`; no zone means
    UTC); `now`; a duration ago (`90m`, `2h ago`, `3d`, `1w`: s, m, h, d, w); `today`, `yesterday` or a weekday, each
    optionally with a time of day (`yesterday 14:05`, `tuesday 9:30`, `last tuesday 14:05`). A weekday means its
    most recent occurrence before today; with no time of day, the start of that day. Raises ValueError naming the
    accepted forms.
    """
    now = (now or utc_now()).astimezone(UTC)
    spoken = " ".join(text.strip().lower().split())
    if spoken == "now":
        return now
    if found := _AGO.fullmatch(spoken):
        return now - timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})
    if found := _DAY_AND_TIME.fullmatch(spoken):
        day_word, hour, minute, second = found.groups()
        today = now.replace(hour=0, minute=0, second=0, microsecond=0)
        if day_word == "today":
            day = today
        elif day_word == "yesterday":
            day = today - timedelta(days=1)
        else:
            weekday = _WEEKDAYS.index(day_word.removeprefix("last ").strip())
            day = today - timedelta(days=(today.weekday() - weekday - 1) % 7 + 1)
        if hour is None:
            return day
        if int(hour) > 23 or int(minute) > 59 or int(second or 0) > 59:
            raise ValueError(f"{text!r}: {hour}:{minute} is not a time of day")
        return day.replace(hour=int(hour), minute=int(minute), second=int(second or 0))
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: give an ISO date or time (2026-11-17T14:05, UTC unless it names a zone), "
            "`now`, a duration ago (90m, 2h, 3d, 1w), or `today`, `yesterday`, `tuesday`, `last tuesday` with an "
            "optional time (`last tuesday 14:05`)"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _instant(iso_text: str) -> datetime:
    moment = datetime.fromisoformat(iso_text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


# -- finding a request's capture lines ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CapturedLine:
    """One capture line of the request: which version answered (or, `shadow`, scored it off the answer), when, and
    which records (`first` .. `first + n - 1`) with which predictions."""

    key: str  # the capture batch it was read from
    model: str
    version: int
    at: str
    first: int
    n: int
    shadow: bool
    prediction: list[Any]
    probabilities: list[list[float]] | None = None
    classes: list[str] | None = None

    @classmethod
    def of(cls, key: str, line: Mapping[str, Any]) -> CapturedLine:
        return cls(
            key=key,
            model=str(line["model"]),
            version=int(line["version"]),
            at=str(line["at"]),
            first=int(line.get("first", 0)),
            n=int(line.get("n", len(line.get("prediction", [])))),
            shadow=bool(line.get("shadow", False)),
            prediction=list(line.get("prediction", [])),
            probabilities=line.get("probabilities"),
            classes=line.get("classes"),
        )


@dataclass
class RequestSearch:
    """What a search for a request's capture lines did and found: the window, and what it cost."""

    request_id: str
    windows: dict[str, tuple[str, str]]  # model -> (since, until), ISO
    lines: list[CapturedLine] = field(default_factory=list)
    listings: int = 0  # LIST requests (one per day, retention class and model searched)
    objects_listed: int = 0
    objects_read: int = 0
    bytes_read: int = 0  # decompressed bytes scanned
    unreadable: list[str] = field(default_factory=list)  # batches that are not gzipped capture lines, with why
    sample_rates: dict[str, float] = field(default_factory=dict)  # models sampling below 1: the request may be out
    read_back_to: datetime | None = None  # once found: the oldest hour still read for more of the request's lines

    @property
    def found(self) -> bool:
        return bool(self.lines)

    def not_found_reason(self) -> str:
        """Why nothing was found, and where it was looked for: for people."""
        windows = "; ".join(f"{model} from {since} to {until}" for model, (since, until) in self.windows.items())
        reasons = [
            f"no capture line of request {self.request_id} in {self.objects_read} capture batches ({windows})",
        ]
        sampled = ", ".join(f"{model} captures {rate:.0%} of requests" for model, rate in self.sample_rates.items())
        if sampled:
            reasons.append(f"the request may not have been sampled ({sampled}: monitoring.sample_rate)")
        reasons.append(
            f"a request served in the last {int(CAPTURE_LATENCY.total_seconds() // 60)} minutes may still be in "
            "Firehose's buffer; an older one may be outside the window (--since) or past the capture retention"
        )
        return "; ".join(reasons)

    def to_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "found": self.found,
            "windows": {m: {"since": s, "until": u} for m, (s, u) in self.windows.items()},
            "listings": self.listings,
            "objects_listed": self.objects_listed,
            "objects_read": self.objects_read,
            "bytes_read": self.bytes_read,
            "unreadable": self.unreadable,
            "sample_rates": self.sample_rates,
        }


def scan_capture_batch(stream: BinaryIO, request_id: str) -> tuple[list[dict[str, Any]], int]:
    """The capture lines of `request_id` in one gzipped batch, read as it streams in, and the decompressed bytes
    scanned. Each 1 MB block is tested for the quoted request id before anything is parsed: a batch that does not
    hold the request costs its decompression and one substring search per block, and memory holds one block."""
    needle = json.dumps(request_id, ensure_ascii=False).encode()
    found: list[dict[str, Any]] = []
    scanned = 0
    with gzip.GzipFile(fileobj=stream, mode="rb") as lines:
        carry = b""
        while block := lines.read(SCAN_BLOCK_BYTES):
            scanned += len(block)
            data = carry + block
            cut = data.rfind(b"\n")
            if cut < 0:  # no line ends in this block (a line longer than a block): keep it whole
                carry = data
                continue
            complete, carry = data[:cut], data[cut + 1 :]
            if needle in complete:
                found += _matching(complete, needle, request_id)
        if carry and needle in carry:
            found += _matching(carry, needle, request_id)
    return found, scanned


def _matching(block: bytes, needle: bytes, request_id: str) -> Iterator[dict[str, Any]]:
    for raw in block.split(b"\n"):
        if needle not in raw:
            continue
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if isinstance(line, dict) and CAPTURE_MARKER in line and line.get("request_id") == request_id:
            yield line


def capture_days(since: datetime, until: datetime) -> list[datetime]:
    """The UTC days of a window, newest first (the unit one LIST reads)."""
    first = since.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    day = until.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    days = []
    while day >= first:
        days.append(day)
        day -= timedelta(days=1)
    return days


def _batch_hour(suffix: str) -> datetime | None:
    """The hour partition of a batch (`2026/11/24/10/<name>`), or None for a key that is not in one."""
    parts = suffix.split("/")
    if len(parts) < 5 or not all(part.isdigit() for part in parts[:4]):
        return None
    year, month, day, hour = (int(p) for p in parts[:4])
    return datetime(year, month, day, hour, tzinfo=UTC)


def candidate_batches(
    store: ObjectStore, bucket: str, windows: Mapping[str, tuple[datetime, datetime]], search: RequestSearch
) -> Iterator[tuple[str, str, datetime]]:
    """(model, key, hour) of every capture batch that may hold a request served in its model's window, newest first.

    Listed a day at a time (every retention class: a contract's retention may have changed since), so a hit in
    today's batches lists nothing older; no day older than `search.read_back_to` is listed once that is set. A batch
    is filed under the hour its first record reached Firehose, never before the request, so hours before the
    window's start are skipped and hours after its end are kept (up to the buffering interval).
    """
    if not windows:
        return
    windows = {model: (since.astimezone(UTC), until.astimezone(UTC)) for model, (since, until) in windows.items()}
    newest = max(until for _, until in windows.values())
    oldest = min(since for since, _ in windows.values())
    for day in capture_days(oldest, newest):
        if search.read_back_to is not None and day + timedelta(days=1) <= search.read_back_to:
            return
        found: list[tuple[str, str, str, datetime]] = []
        for model, (since, until) in windows.items():
            if not since.replace(hour=0, minute=0, second=0, microsecond=0) <= day <= until:
                continue
            for days in RETENTION_DAYS:
                prefix = f"{CAPTURE_PREFIX}{retention_class(days)}/{model}/"
                keys = store.list_keys(bucket, f"{prefix}{day:%Y/%m/%d}/")
                search.listings += 1
                for key in keys:
                    hour = _batch_hour(key[len(prefix) :])
                    if hour is None or hour + timedelta(hours=1) <= since or hour > until + CAPTURE_LATENCY:
                        continue
                    found.append((key[len(prefix) :], model, key, hour))
        search.objects_listed += len(found)
        for _suffix, model, key, hour in sorted(found, reverse=True):
            yield model, key, hour


def find_request(
    store: ObjectStore,
    bucket: str,
    request_id: str,
    windows: Mapping[str, tuple[datetime, datetime]],
    sample_rates: Mapping[str, float] | None = None,
) -> RequestSearch:
    """Look for the capture lines of `request_id` among the batches of `windows` (model -> (since, until)), newest
    first, and stop once found: after the batch that holds it, batches of its model are read only while they still
    hold some of its lines and are at most an hour older (so every line of a request split across two batches, and
    a shadow scoring written just after the answer, are found).

    `sample_rates` are the models' `monitoring.sample_rate`; those below 1 are named when nothing is found.
    """
    search = RequestSearch(
        request_id=request_id,
        windows={model: (since.isoformat(), until.isoformat()) for model, (since, until) in windows.items()},
        sample_rates={model: rate for model, rate in (sample_rates or {}).items() if rate < 1.0},
    )
    found_model: str | None = None
    for model, key, hour in candidate_batches(store, bucket, windows, search):
        if search.read_back_to is not None and hour < search.read_back_to:
            break
        if found_model is not None and model != found_model:
            continue
        search.objects_read += 1
        try:
            with store.open(bucket, key) as stream:
                lines, scanned = scan_capture_batch(stream, request_id)
        except (OSError, EOFError, NotFoundError) as error:  # not gzip (or expired meanwhile): skip it, say so
            search.unreadable.append(f"{key}: {error}")
            continue
        search.bytes_read += scanned
        search.lines += [CapturedLine.of(key, line) for line in lines]
        if lines and found_model is None:
            found_model = search.lines[-1].model
            search.read_back_to = hour - timedelta(hours=1)
        elif found_model is not None and not lines:
            break
    search.lines.sort(key=lambda line: (line.shadow, line.version, line.first))
    return search


def search_windows(
    registry: Registry,
    models: Sequence[str],
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[dict[str, tuple[datetime, datetime]], dict[str, float]]:
    """The window each model is searched in (from `since`, else back to the capture retention of its contract) and
    its sample rate. A model whose dataset is not declared is searched over the longest retention class."""
    until = until or utc_now()
    windows: dict[str, tuple[datetime, datetime]] = {}
    rates: dict[str, float] = {}
    for model in models:
        try:
            monitoring = registry.contract(model).monitoring
            retention, rates[model] = monitoring.retention_days, monitoring.sample_rate
        except NotFoundError:
            retention = max(RETENTION_DAYS)
        windows[model] = (since or until - timedelta(days=retention), until)
    return windows, rates


# -- walking the lineage -----------------------------------------------------------------------------------------------


def promotions(records: Iterable[AuditRecord]) -> list[AuditRecord]:
    """The records of a version's audit trail that let it serve or decided whether it may: approvals and rejections
    (any action naming them), status changes, champion moves to it, and deployments of it."""
    kinds = ("approv", "reject", ".status", "model.alias.moved", "model.deployment.")
    return [r for r in records if any(kind in r.action for kind in kinds)]


@dataclass
class Lineage:
    """A model version's lineage, from the registry's records."""

    model: str
    version: ModelVersion | None
    run: PipelineRun | None = None
    dataset: DatasetVersion | None = None
    contract_version: int | None = None
    contract_fingerprint: str | None = None
    dataset_registered_by: AuditRecord | None = None
    audit: list[AuditRecord] = field(default_factory=list)
    serving_then: Serving | None = None  # what the aliases said when the request was served
    missing: list[str] = field(default_factory=list)  # links the registry cannot resolve, with why

    def to_dict(self) -> dict[str, Any]:
        version = self.version
        return {
            "model": self.model,
            "version": version.version if version else None,
            "status": version.status.value if version else None,
            "registered_at": version.created_at if version else None,
            "decision": version.decision if version else None,
            "metrics": version.metrics if version else None,
            "artifact": version.artifact.model_dump() if version else None,
            "code_version": version.code_version if version else None,
            "execution": version.execution if version else None,
            "run": self.run.model_dump(mode="json") if self.run else None,
            "dataset": self.dataset.model_dump(mode="json", exclude={"profile"}) if self.dataset else None,
            "contract_version": self.contract_version,
            "contract_fingerprint": self.contract_fingerprint,
            "dataset_registered_by": _record(self.dataset_registered_by) if self.dataset_registered_by else None,
            "audit": [_record(r) for r in self.audit],
            "promotions": [_record(r) for r in promotions(self.audit)],
            "serving_then": self.serving_then.to_dict() if self.serving_then else None,
            "missing": self.missing,
        }


def _record(record: AuditRecord) -> dict[str, Any]:
    return {
        "seq": record.seq,
        "at": record.at,
        "actor": record.actor,
        "action": record.action,
        "subject": record.subject,
        "details": record.details,
    }


def version_lineage(
    registry: Registry,
    model: str,
    version: int,
    records: Sequence[AuditRecord] | None = None,
    at: datetime | None = None,
) -> Lineage:
    """Walk from a model version to its pipeline run, the dataset version it trained on (with its contract's
    version and fingerprint), its code version and its audit trail. `records` are the audit records to search
    (read from the registry when not given); with `at`, also what served the model then (`serving_at`)."""
    records = registry.audit_records(f"model/{model}/", f"dataset/{model}/") if records is None else records
    lineage = Lineage(model=model, version=None)
    try:
        lineage.version = registry.model_version(model, version)
    except NotFoundError as error:
        lineage.missing.append(str(error))
        return lineage
    record = lineage.version
    lineage.run = next((r for r in registry.runs(model) if r.execution == record.execution), None)
    if lineage.run is None:
        lineage.missing.append(f"no pipeline run {record.execution} is recorded for '{model}'")
    try:
        lineage.dataset = registry.dataset_version(model, record.dataset_version)
    except NotFoundError as error:
        lineage.missing.append(str(error))
    lineage.contract_version, lineage.contract_fingerprint = _contract_of(registry, lineage, records)
    if lineage.dataset is not None:
        subject = f"dataset/{model}/v{lineage.dataset.version}"
        lineage.dataset_registered_by = next(
            (r for r in records if r.subject == subject and r.action == "dataset.version.registered"), None
        )
    lineage.audit = version_audit(records, model, version)
    if at is not None:
        lineage.serving_then = serving_at(serving_history(records, model), at)
    return lineage


def _contract_of(registry: Registry, lineage: Lineage, records: Sequence[AuditRecord]) -> tuple[int | None, str | None]:
    """The contract version the training data was validated against, and that contract's fingerprint: from the model
    version when it recorded them, else from the dataset's current contract or the audit record that declared it."""
    version, dataset = lineage.version, lineage.dataset
    number = dataset.contract_version if dataset else (version.contract_version if version else None)
    if number is None:
        return None, None
    if version is not None and version.contract_version == number and version.contract_fingerprint:
        return number, version.contract_fingerprint
    try:
        current = registry.dataset(lineage.model)
    except NotFoundError:
        current = None
    if current is not None and current.contract_version == number:
        return number, current.contract_fingerprint
    declared = next(
        (
            r
            for r in records
            if r.action == "dataset.declared"
            and r.subject == f"dataset/{lineage.model}"
            and r.details.get("contract_version") == number
        ),
        None,
    )
    return number, str(declared.details["fingerprint"]) if declared else None


@dataclass
class RequestLineage:
    """`loopml lineage REQUEST_ID`: the search, and the lineage of every version that answered or shadowed it."""

    search: RequestSearch
    lineages: dict[tuple[str, int], Lineage] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        answered = [line for line in self.search.lines if not line.shadow]
        shadow = [line for line in self.search.lines if line.shadow]

        def entry(line: CapturedLine) -> dict[str, Any]:
            return {"capture": asdict(line), "lineage": self.lineages[(line.model, line.version)].to_dict()}

        return {
            "search": self.search.to_dict(),
            "answered": [entry(line) for line in answered],
            "shadow": [entry(line) for line in shadow],
            "not_found": None if self.search.found else self.search.not_found_reason(),
        }


def trace(
    registry: Registry,
    store: ObjectStore,
    bucket: str,
    request_id: str,
    models: Sequence[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> RequestLineage:
    """Find the capture lines of `request_id` (in `models`, else every registered model) and walk the lineage of
    each version that answered it or scored it in shadow. The audit trail is read once, and only when found."""
    known = registry.models()
    unknown = sorted(set(models or ()) - set(known))
    if unknown:
        raise NotFoundError(f"no model {', '.join(repr(m) for m in unknown)} is registered")
    names = list(models) if models else known
    windows, rates = search_windows(registry, names, since, until)
    search = find_request(store, bucket, request_id, windows, rates)
    result = RequestLineage(search=search)
    if not search.found:
        return result
    models_found = sorted({line.model for line in search.lines})
    records = registry.audit_records(*(f"{kind}/{name}/" for name in models_found for kind in ("model", "dataset")))
    for line in search.lines:
        if (line.model, line.version) not in result.lineages:
            result.lineages[(line.model, line.version)] = version_lineage(
                registry, line.model, line.version, records, at=_instant(line.at)
            )
    return result


# -- which version served when ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServingChange:
    """One change of what serves a model, from its audit record: the champion moved, or a challenger's deployment
    started, changed its mode or weight, was promoted or ended."""

    seq: int
    at: str
    actor: str
    action: str
    alias: str  # champion | challenger
    version: int | None  # the champion after the change, or the challenger deployed (None: the deployment ended)
    previous: int | None  # the champion before, or the challenger that ended
    mode: str | None = None
    weight: int | None = None
    reason: str = ""

    def describe(self) -> str:
        """One line for people: `champion v1 -> v2`, `challenger v3 deployed: canary 10%`."""
        if self.alias == CHAMPION:
            before = f"v{self.previous}" if self.previous is not None else "none"
            return f"champion {before} -> v{self.version}"
        share = _share(self.mode, self.weight)
        verb = self.action.rsplit(".", 1)[-1]
        if self.version is None:
            return f"challenger v{self.previous} {verb} ({share})"
        return f"challenger v{self.version} {verb}: {share}"


def _share(mode: str | None, weight: int | None) -> str:
    if mode is None:
        return "-"
    return mode if weight is None else f"{mode} {weight}%"


@dataclass(frozen=True)
class Serving:
    """What served a model at one instant: the champion (and since when, by whom) and the challenger, if any."""

    at: str
    champion: int | None
    champion_change: ServingChange | None = None
    challenger: int | None = None
    mode: str | None = None
    weight: int | None = None
    challenger_change: ServingChange | None = None

    def describe(self, with_time: bool = True) -> str:
        """`at <time> champion v1 (since ..., actor: reason); challenger v2 canary 10% (since ..., actor)`."""
        when = f"at {self.at} " if with_time else ""
        if self.champion is None:
            return f"{when}no version of the model was serving yet"
        change = self.champion_change
        text = f"{when}champion v{self.champion}"
        if change is not None:
            text += f" (since {change.at}, {change.actor}: {change.reason or change.action})"
        if self.challenger is not None:
            deployed = self.challenger_change
            by = f" (since {deployed.at}, {deployed.actor})" if deployed is not None else ""
            text += f"; challenger v{self.challenger} {_share(self.mode, self.weight)}{by}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "champion": self.champion,
            "champion_change": asdict(self.champion_change) if self.champion_change else None,
            "challenger": self.challenger,
            "mode": self.mode,
            "weight": self.weight,
            "challenger_change": asdict(self.challenger_change) if self.challenger_change else None,
        }


def serving_history(records: Iterable[AuditRecord], model: str) -> list[ServingChange]:
    """The changes of `model`'s champion and challenger aliases, oldest first, from its audit records.

    `model.alias.moved` on the champion alias moves it (`to`); on the challenger alias, `model.deployment.started`
    and `.changed` deploy a version (mode, weight), `.promoted` and `.ended` end the deployment. Records about
    anything else are ignored, so the whole audit trail may be given.
    """
    champion_subject = f"model/{model}/alias/{CHAMPION}"
    challenger_subject = f"model/{model}/alias/{CHALLENGER}"
    changes: list[ServingChange] = []
    challenger: int | None = None
    for record in sorted(records, key=lambda r: r.seq):
        details = record.details
        reason = str(details.get("reason") or "")
        common: dict[str, Any] = {
            "seq": record.seq,
            "at": record.at,
            "actor": record.actor,
            "action": record.action,
            "reason": reason,
        }
        if record.subject == champion_subject and "to" in details:
            changes.append(ServingChange(alias=CHAMPION, version=details["to"], previous=details.get("from"), **common))
        elif record.subject == challenger_subject:
            verb = record.action.rsplit(".", 1)[-1]
            if verb in ("started", "changed"):
                moved_to = details.get("to")
                target: dict[str, Any] = moved_to if isinstance(moved_to, dict) else details
                mode, weight = target.get("mode"), target.get("weight")
                changes.append(
                    ServingChange(
                        alias=CHALLENGER,
                        version=details.get("version"),
                        previous=challenger,
                        mode=mode,
                        weight=weight,
                        **common,
                    )
                )
                challenger = details.get("version")
            elif verb in ("promoted", "ended"):
                changes.append(
                    ServingChange(
                        alias=CHALLENGER,
                        version=None,
                        previous=details.get("version", challenger),
                        mode=details.get("mode"),
                        weight=details.get("weight"),
                        **common,
                    )
                )
                challenger = None
    return changes


def serving_at(changes: Sequence[ServingChange], at: datetime) -> Serving:
    """What served the model at `at`: the history's changes up to that instant (inclusive), folded."""
    champion: ServingChange | None = None
    challenger: ServingChange | None = None
    for change in changes:
        if _instant(change.at) > at:
            break
        if change.alias == CHAMPION:
            champion = change
        else:
            challenger = change if change.version is not None else None
    return Serving(
        at=at.astimezone(UTC).isoformat(),
        champion=champion.version if champion else None,
        champion_change=champion,
        challenger=challenger.version if challenger else None,
        mode=challenger.mode if challenger else None,
        weight=challenger.weight if challenger else None,
        challenger_change=challenger,
    )
