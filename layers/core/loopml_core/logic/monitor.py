"""The monitoring check: what the champion has served since the last check, against its training baseline.

Captured traffic arrives as batches under `captures/<retention>/<model>/<hour>/` (loopml_core.capture). A check
reads the batches it has not read yet, counts them into drift tallies in bounded memory, judges every feature and the
prediction, writes an HTML report, decides whether to retrain (within the contract's `retraining:` limits), and
records all of it in one transaction: the new cursor, the drift episode, the audit record and the alert to send.
The alert is published after the transaction and marked sent; one that failed to go out is sent by the next check.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from loopml_core import drift
from loopml_core.adapters.notifier import Notifier
from loopml_core.adapters.object_store import ObjectStore
from loopml_core.adapters.pipeline import PipelineRunner
from loopml_core.capture import CAPTURE_PREFIX, retention_class
from loopml_core.capture_reader import Counted, capture_batches, count_batch
from loopml_core.clock import iso, utc_now
from loopml_core.contract import RETENTION_DAYS, DatasetContract, Retraining
from loopml_core.drift_report import render_report, report_key
from loopml_core.errors import ConflictError, NotFoundError
from loopml_core.logic.labels import PendingLabels, pending_for
from loopml_core.logic.runs import execution_name, start_training
from loopml_core.models import Alert, DriftEpisode, ModelVersion, MonitorState
from loopml_core.performance import PerformanceCounts
from loopml_core.registry import Registry

WINDOW_OBJECTS = 2_000  # capture batches one check reads at most; a backlog is worked off over several checks
# Firehose files a batch under the hour its first record arrived in and writes it up to its buffering interval later,
# so a batch can still appear in an hour for a while after the hour ends. An hour is closed this long after its end;
# until then the check remembers which of its batches it has read instead of moving its cursor past them.
SETTLE_SECONDS = 900
# The live performance a check reads, judges and plots: labels keep arriving for weeks, but a model's performance of
# months ago has no bearing on a drop today, and the read grows with every label file otherwise.
PERFORMANCE_HISTORY_DAYS = 90


class CheckFailedError(Exception):
    """Some models' checks failed; `results` holds every model's result, the failed ones included."""

    def __init__(self, failures: list[tuple[str, Exception]], results: list[CheckResult]) -> None:
        listed = "; ".join(f"{model}: {type(error).__name__}: {error}" for model, error in failures)
        super().__init__(f"{len(failures)} check(s) failed: {listed}")
        self.failures = failures
        self.results = results


@dataclass(frozen=True)
class RetrainDecision:
    start: bool
    reason: str
    execution: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"decision": "started" if self.start else "skipped", "reason": self.reason, "execution": self.execution}


def decide_retraining(
    rules: Retraining,
    *,
    now: datetime,
    rows: int | None,
    new_rows: int,
    recent_starts: list[str],
    running: str | None,
) -> RetrainDecision:
    """Whether monitoring may start a retraining run now, and if not, why not (each reason names its setting).

    `rows` are the captured rows behind a drift trigger; a performance trigger passes None, its evidence (enough
    labels) having been judged already.
    """
    if running is not None:
        return RetrainDecision(False, f"a run is already in progress: {running}")
    if rows is not None and rows < rules.min_captured_rows:
        return RetrainDecision(
            False, f"the check saw {rows} rows, fewer than retraining.min_captured_rows ({rules.min_captured_rows})"
        )
    if new_rows < rules.min_new_rows:
        return RetrainDecision(
            False,
            f"{new_rows} new accepted rows since the champion's dataset, fewer than retraining.min_new_rows "
            f"({rules.min_new_rows}): upload fresh data, or run `loopml pipeline start` to retrain anyway",
        )
    starts = sorted(datetime.fromisoformat(s.replace("Z", "+00:00")) for s in recent_starts)
    if starts and now - starts[-1] < timedelta(hours=rules.cooldown_hours):
        ready = starts[-1] + timedelta(hours=rules.cooldown_hours)
        return RetrainDecision(
            False, f"retraining.cooldown_hours ({rules.cooldown_hours:g}) since the last start; next at {iso(ready)}"
        )
    today = [s for s in starts if s.date() == now.date()]
    if len(today) >= rules.daily_budget:
        return RetrainDecision(False, f"retraining.daily_budget ({rules.daily_budget}) already used today (UTC)")
    return RetrainDecision(True, "within every retraining limit")


@dataclass
class CheckResult:
    """One model's check: the document `loopml drift check --json` prints and the HTML report renders."""

    model: str
    status: str  # no-champion | insufficient-data | ok | drift
    checked_at: str
    version: int | None = None
    rows: int = 0
    min_rows: int = 0
    window: dict[str, Any] = field(default_factory=dict)
    report: drift.DriftReport | None = None
    retraining: RetrainDecision | None = None
    episode: str = "none"  # none | opened | continues | closed
    alert: str | None = None
    report_uri: str | None = None
    notes: list[str] = field(default_factory=list)
    performance: dict[str, Any] | None = None  # live metric per version and day, once labels have arrived
    performance_episode: str = "none"  # none | opened | continues | closed

    @property
    def performance_dropped(self) -> bool:
        return bool(self.performance and self.performance.get("dropped"))

    @property
    def drifted(self) -> list[str]:
        return list(self.report.drifted) if self.report else []

    @property
    def action(self) -> str:
        """One line on what the check did, for logs and the CLI."""
        if self.retraining is None:
            return ""
        if self.retraining.start:
            return f"started retraining: {self.retraining.execution}"
        return f"not retrained: {self.retraining.reason}"

    def to_dict(self) -> dict[str, Any]:
        columns = self.report.columns if self.report else {}
        features = {name: _column(column) for name, column in columns.items() if name != drift.PREDICTION}
        prediction = columns.get(drift.PREDICTION)
        return {
            "model": self.model,
            "version": self.version,
            "status": self.status,
            "checked_at": self.checked_at,
            "window": self.window,
            "rows": self.rows,
            "min_rows": self.min_rows,
            "thresholds": self.report.thresholds.model_dump() if self.report else None,
            "features": features,
            "prediction": _column(prediction) if prediction else None,
            "drifted": self.drifted,
            "episode": self.episode,
            "performance": self.performance,
            "performance_episode": self.performance_episode,
            "retraining": self.retraining.to_dict() if self.retraining else None,
            "action": self.action,
            "alert": self.alert,
            "report": self.report_uri,
            "notes": self.notes,
        }


def _hour_of(suffix: str) -> str | None:
    """The hour partition a batch was delivered in (`2026/11/24/10/...`), as an ISO time."""
    parts = suffix.split("/")
    if len(parts) < 5 or not all(part.isdigit() for part in parts[:4]):
        return None
    year, month, day, hour = parts[:4]
    return f"{year}-{month}-{day}T{hour}:00:00+00:00"


def _column(column: drift.ColumnDrift) -> dict[str, Any]:
    return {
        **column.summary(),
        "kind": column.kind,
        "effect": round(column.effect, 6),
        "buckets": column.buckets,
        "expected": [round(v, 6) for v in column.expected],
        "observed": [round(v, 6) for v in column.observed],
    }


class DriftMonitor:
    def __init__(
        self,
        store: ObjectStore,
        registry: Registry,
        pipeline: PipelineRunner,
        notifier: Notifier,
        artifact_bucket: str,
        clock: Callable[[], datetime] = utc_now,
        settle_seconds: int = SETTLE_SECONDS,
    ) -> None:
        self.store = store
        self.registry = registry
        self.pipeline = pipeline
        self.notifier = notifier
        self.artifact_bucket = artifact_bucket
        self.clock = clock
        self.settle = timedelta(seconds=settle_seconds)

    def check_all(self) -> list[CheckResult]:
        """Check every model; one model's failure does not stop the others, and is raised once they are done (so
        the function errors and its alarm fires)."""
        failures: list[tuple[str, Exception]] = []
        try:
            self.deliver_alerts()
        except Exception as error:
            failures.append(("(alerts outbox)", error))
        try:
            self.registry.deliver_events()  # registry events whose publishing failed when their change committed
        except Exception as error:
            failures.append(("(events outbox)", error))
        results = []
        for name in self.registry.models():
            try:
                results.append(self.check(name))
            except Exception as error:
                failures.append((name, error))
                results.append(
                    CheckResult(name, "failed", iso(self.clock()), notes=[f"{type(error).__name__}: {error}"])
                )
        if failures:
            raise CheckFailedError(failures, results)
        return results

    def deliver_alerts(self) -> int:
        """Publish alerts that checks recorded but could not send (say SNS was unreachable); returns how many."""
        pending = self.registry.pending_alerts()
        for alert in pending:
            self.notifier.publish(alert.subject, alert.message)
            self.registry.alert_sent(alert)
        return len(pending)

    def check(self, model: str) -> CheckResult:
        now = self.clock()
        try:
            champion = self.registry.champion_version(model)
        except NotFoundError:
            return CheckResult(model, "no-champion", iso(now))
        contract = self.registry.contract(model)
        recorded = self.registry.monitor_state(model)
        state = self._for_champion(recorded, champion.version)
        profile = drift.load_profile(
            self.store.get(champion.baseline.bucket, champion.baseline.key, champion.baseline.version_id)
        )
        batches = self._unread_batches(model, state)
        pending = pending_for(self.store, self.artifact_bucket, model, now)
        window, counted = self._count(contract, profile, champion.version, batches, pending)
        late = {p.source: counts for p in pending if (counts := p.counts(contract))}
        settings = contract.monitoring
        report = drift.judge(profile, window, settings.drift, min_rows=settings.min_rows)
        result = CheckResult(
            model,
            "drift" if report.has_drift else "ok",
            iso(now),
            version=champion.version,
            rows=counted.rows,
            min_rows=settings.min_rows,
            window=self._window(state.cursor, batches, counted),
            report=report,
            notes=[f"unreadable capture batch {note}" for note in counted.unreadable],
        )
        result.performance = self._performance(model, contract, champion, late, now)
        keep_window = report.insufficient_data and len(batches) < WINDOW_OBJECTS
        if report.insufficient_data:
            result.status = "insufficient-data"
        if keep_window and not late and not self._performance_news(state, result):
            if result.performance_dropped:
                result.performance_episode = "continues"
            return result  # the cursor stays: the next check counts these rows again
        if report.insufficient_data and not keep_window:
            result.notes.append(f"{WINDOW_OBJECTS} batches hold too few rows of v{champion.version}: moved past them")
        window_id = self._window_id(model, state, [] if keep_window else batches)
        next_state = self._next_state(state, result, window_id, now, [] if keep_window else batches)
        if keep_window:  # only the performance moved: the rows stay unread for the next check
            next_state = next_state.model_copy(update={"cursor": state.cursor, "open_batches": state.open_batches})
        if result.status == "drift" or result.performance_dropped:
            why = f"drift in {', '.join(result.drifted)}" if result.status == "drift" else self._drop_text(result)
            trigger, evidence = ("drift", counted.rows) if result.status == "drift" else ("performance", None)
            result.retraining = self._retrain(model, contract, champion, trigger, why, evidence, state, now, window_id)
            if result.retraining.start:
                next_state.retrain_starts.append(iso(now))
            if result.episode == "opened" or result.performance_episode == "opened":
                result.alert = f"{model}-{window_id}"
        result.report_uri = self._write_report(result, now)
        self._record(result, recorded, next_state, late, pending, now)
        return result

    @staticmethod
    def _for_champion(recorded: MonitorState, version: int) -> MonitorState:
        """The state a check starts from: a new champion starts without the episodes of the one before."""
        if recorded.champion_version not in (None, version):
            recorded = recorded.model_copy(update={"episode": None, "performance_drop": None})
        return recorded.model_copy(update={"champion_version": version})

    def _record(
        self,
        result: CheckResult,
        recorded: MonitorState,
        next_state: MonitorState,
        late: dict[str, dict[tuple[int, str], PerformanceCounts]],
        pending: list[PendingLabels],
        now: datetime,
    ) -> None:
        """One transaction for the state, the audit record, the alert and late labels; then the rest of the work."""
        alert = self._alert(result, now) if result.alert else None
        performance = result.performance
        details = {
            "window": result.window,
            "rows": result.rows,
            "version": result.version,
            "drifted": result.drifted,
            "psi": {name: round(psi, 6) for name, psi in result.report.per_feature.items()} if result.report else {},
            "episode": result.episode,
            "retraining": result.retraining.to_dict() if result.retraining else None,
            "alert": result.alert,
            "report": result.report_uri,
            "status": result.status,
            "performance": {key: performance[key] for key in ("metric", "holdout", "latest", "dropped")}
            if performance
            else None,
            "performance_episode": result.performance_episode,
            "late_labels": {source: sum(c.rows for c in counts.values()) for source, counts in late.items()},
        }
        try:
            self.registry.record_check(recorded, next_state, details, alert, late)
        except ConflictError:
            # Another check (or an earlier attempt of this one) already recorded this window.
            result.notes.append("this window was already recorded by another check")
            return
        for waiting in pending:
            if waiting.matched:
                waiting.save(self.store, self.artifact_bucket)  # what is left waits for a later check
        if alert is not None:
            self.notifier.publish(alert.subject, alert.message)
            self.registry.alert_sent(alert)

    # -- reading the window

    def _unread_batches(self, model: str, state: MonitorState) -> list[str]:
        """Keys of the capture batches not read yet, oldest first, across every retention class: those after the
        cursor that are not among the batches already read in hours still open."""
        read = set(state.open_batches)
        found: list[tuple[str, str]] = []
        for days in RETENTION_DAYS:
            prefix = f"{CAPTURE_PREFIX}{retention_class(days)}/{model}/"
            start_after = prefix + state.cursor if state.cursor else None
            keys = self.store.list_keys(self.artifact_bucket, prefix, start_after)
            found += [(key[len(prefix) :], key) for key in keys if key[len(prefix) :] not in read]
        return [key for _suffix, key in sorted(found)[:WINDOW_OBJECTS]]

    def _count(
        self,
        contract: DatasetContract,
        profile: dict[str, Any],
        version: int,
        keys: list[str],
        pending: list[PendingLabels],
    ) -> tuple[drift.Window, Counted]:
        """Count the batches into a window and, in the same pass, match them against labels still waiting."""
        import pyarrow as pa

        window, counted = drift.Window(), Counted()
        for key in keys:
            counted.objects += 1
            try:
                with self.store.open(self.artifact_bucket, key) as stream:
                    for batch in capture_batches(contract, stream):
                        count_batch(profile, contract.name, version, batch, window, counted)
                        for waiting in pending:
                            waiting.join(batch, contract.name)
            except (pa.ArrowInvalid, OSError, EOFError) as error:  # a batch that is not capture lines: skip it
                counted.unreadable.append(f"{key}: {error}")
        return window, counted

    @staticmethod
    def _suffix(key: str) -> str:
        return key.split("/", 3)[3]  # after captures/<retention>/<model>/

    def _window(self, cursor: str | None, keys: list[str], counted: Counted) -> dict[str, Any]:
        hours = [_hour_of(self._suffix(key)) for key in (keys[0], keys[-1])] if keys else [None, None]
        return {
            "start": hours[0],
            "end": hours[1],
            "after": cursor,
            "through": self._suffix(keys[-1]) if keys else cursor,
            "objects": len(keys),
            "lines": counted.lines,
            "other_versions": {str(v): n for v, n in sorted(counted.other_versions.items())},
        }

    @staticmethod
    def _window_id(model: str, state: MonitorState, keys: list[str]) -> str:
        """The same state and batches make the same id: a retried check names the same execution and alert, and
        each later check (even one that reads no batch, recording only a performance change) a new one."""
        return hashlib.sha256("|".join([model, str(state.revision), *keys]).encode()).hexdigest()[:16]

    # -- deciding

    def _next_state(
        self, state: MonitorState, result: CheckResult, window_id: str, now: datetime, keys: list[str]
    ) -> MonitorState:
        episode = state.episode
        if result.status == "drift":
            if episode is None:
                episode = DriftEpisode(since=iso(now), window=window_id, columns=result.drifted)
                result.episode = "opened"
            else:
                result.episode = "continues"
        elif episode is not None and result.status == "ok":
            episode, result.episode = None, "closed"
        dropped_at = state.performance_drop
        if result.performance_dropped:
            latest = result.performance["latest"] if result.performance else {}
            result.performance_episode = "continues" if dropped_at else "opened"
            dropped_at = dropped_at or f"v{latest.get('version')} {latest.get('window')}"
        elif dropped_at and result.performance and result.performance.get("latest"):
            dropped_at, result.performance_episode = None, "closed"
        day_ago = now - timedelta(hours=24)
        recent = [s for s in state.retrain_starts if datetime.fromisoformat(s.replace("Z", "+00:00")) > day_ago]
        cursor, still_open = state.cursor, []
        for suffix in sorted([*state.open_batches, *(self._suffix(key) for key in keys)]):
            if self._closed(suffix, now):
                cursor = max(cursor or suffix, suffix)
            else:
                still_open.append(suffix)
        return state.model_copy(
            update={
                "cursor": cursor,
                "open_batches": still_open,
                "episode": episode,
                "performance_drop": dropped_at,
                "retrain_starts": recent,
                "last_check": iso(now),
            }
        )

    def _closed(self, suffix: str, now: datetime) -> bool:
        """Whether no batch can appear any more in the hour `suffix` was filed under."""
        hour = _hour_of(suffix)
        if hour is None:
            return True
        return datetime.fromisoformat(hour) + timedelta(hours=1) + self.settle <= now

    def _retrain(
        self,
        model: str,
        contract: DatasetContract,
        champion: ModelVersion,
        trigger: str,
        why: str,
        rows: int | None,
        state: MonitorState,
        now: datetime,
        window_id: str,
    ) -> RetrainDecision:
        versions = self.registry.dataset_versions(model)
        new_rows = sum(v.rows for v in versions if v.version > champion.dataset_version)
        running = self.pipeline.running_for(model)
        unique = window_id[:12]  # a retried check names the same execution, and so starts no second one
        if versions:
            ours = execution_name(model, versions[-1].version, trigger, unique)
            if any(execution.name == ours for execution in running):  # this window's run, from an earlier attempt
                return RetrainDecision(True, f"retraining on dataset v{versions[-1].version}", ours)
        decision = decide_retraining(
            contract.retraining,
            now=now,
            rows=rows,
            new_rows=new_rows,
            recent_starts=state.retrain_starts,
            running=running[0].name if running else None,
        )
        if not decision.start or not versions:
            return decision
        latest = versions[-1]
        started = start_training(
            self.pipeline,
            model=model,
            dataset_version=latest.version,
            trigger=trigger,
            reason=why,
            skip_if_running=False,
            unique=unique,
        )
        execution = started.execution.name if started.execution else None
        return RetrainDecision(True, f"retraining on dataset v{latest.version}", execution)

    @staticmethod
    def _drop_text(result: CheckResult) -> str:
        performance = result.performance or {}
        latest = performance.get("latest") or {}
        return (
            f"live {performance.get('metric')} of v{latest.get('version')} on {latest.get('window')} was "
            f"{latest.get('value', 0):.3f} over {latest.get('labels')} labels, beyond "
            f"{performance.get('limit', 0):.3f} "
            f"(holdout {performance.get('holdout', 0):.3f}, tolerance {performance.get('tolerance', 0):.0%})"
        )

    def _alert(self, result: CheckResult, now: datetime) -> Alert:
        assert result.alert is not None
        lines = []
        if result.episode == "opened" and result.report is not None:
            lines.append(f"Drift on {result.rows} captured rows:")
            lines += [
                f"  {name}: PSI {column.psi:.3f}, {column.test} {column.statistic:.3f} (p={column.p_value:.2g})"
                for name, column in result.report.columns.items()
                if column.drifted
            ]
        if result.performance_episode == "opened":
            lines.append(f"Performance: {self._drop_text(result)}.")
        what = " and ".join(
            part
            for part, opened in (
                ("drift", result.episode == "opened"),
                ("performance", result.performance_episode == "opened"),
            )
            if opened
        )
        return Alert(
            id=result.alert,
            subject=f"LoopML {what}: {result.model} v{result.version}"[:100],
            message=(
                f"Model {result.model} (champion v{result.version}).\n"
                + "\n".join(lines)
                + f"\nAction: {result.action or 'no retraining decision'}."
                + f"\nReport: {result.report_uri or 'not written'}\n"
                "One alert per episode: the next comes after a check finds the model well again."
            ),
            created_at=iso(now),
        )

    def _performance(
        self,
        model: str,
        contract: DatasetContract,
        champion: ModelVersion,
        late: dict[str, dict[tuple[int, str], PerformanceCounts]],
        now: datetime,
    ) -> dict[str, Any] | None:
        """The live metric per model version and day of prediction over the last `PERFORMANCE_HISTORY_DAYS`, and
        whether the champion's latest judged day fell beyond the contract's tolerance from the holdout metric it was
        promoted on."""
        from loopml_core.performance import dropped, limit, metrics

        metric = contract.performance_metric
        settings = contract.monitoring.performance
        recent = [v.version for v in self.registry.model_versions(model)][-5:]
        windows: list[dict[str, Any]] = []
        since = (now - timedelta(days=PERFORMANCE_HISTORY_DAYS)).date().isoformat()
        for version in sorted({*recent, champion.version}):
            days = self.registry.performance(model, version, since)
            for matched in late.values():  # labels this check matched, recorded with it
                for (late_version, day), counts in matched.items():
                    if late_version == version:
                        days[day] = days[day] + counts if day in days else counts
            for day, counts in sorted(days.items()):
                value = metrics(counts).get(str(metric))
                if value is not None:
                    windows.append({"version": version, "window": day, "labels": counts.rows, "value": value})
        if not windows:
            return None
        judged = [w for w in windows if w["version"] == champion.version and int(w["labels"]) >= settings.min_labels]
        latest = judged[-1] if judged else None
        holdout = champion.metrics.get(str(metric))
        return {
            "metric": str(metric),
            "higher_is_better": metric.higher_is_better,
            "holdout": holdout,
            "tolerance": settings.tolerance,
            "min_labels": settings.min_labels,
            "limit": limit(metric, holdout, settings.tolerance) if holdout is not None else None,
            "windows": windows[-200:],
            "latest": latest,
            "dropped": bool(
                latest is not None
                and holdout is not None
                and dropped(metric, holdout, float(latest["value"]), settings.tolerance)
            ),
        }

    @staticmethod
    def _performance_news(state: MonitorState, result: CheckResult) -> bool:
        """Whether the performance verdict opens or closes an episode: worth recording even without new traffic."""
        if result.performance_dropped:
            return state.performance_drop is None
        latest = result.performance.get("latest") if result.performance else None
        return state.performance_drop is not None and latest is not None

    def _write_report(self, result: CheckResult, now: datetime) -> str:
        key = report_key(result.model, now)
        result.report_uri = f"s3://{self.artifact_bucket}/{key}"
        self.store.put(self.artifact_bucket, key, render_report(result.to_dict()).encode(), "text/html; charset=utf-8")
        return result.report_uri
