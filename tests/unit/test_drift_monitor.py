"""The monitoring check's decisions, on fakes: when it alerts, when it retrains, and when it must not."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from infra.local.seed import register_dataset, register_model
from loopml_core.adapters.notifier import InMemoryNotifier
from loopml_core.adapters.object_store import InMemoryObjectStore
from loopml_core.adapters.pipeline import InMemoryPipelineRunner
from loopml_core.adapters.table import InMemoryTable
from loopml_core.capture import capture_lines
from loopml_core.contract import Retraining, load_contract
from loopml_core.drift import build_profile
from loopml_core.logic.monitor import CheckFailedError, DriftMonitor, decide_retraining
from loopml_core.models import UploadOutcome, UploadStatus
from loopml_core.performance import classification_counts
from loopml_core.registry import Registry

CONTRACT = load_contract("""
name: churn
task: classification
target: churned
features:
  - {name: tenure_months, type: int, min: 0}
  - {name: plan, type: category, values: [basic, pro]}
monitoring: {min_rows: 50}
retraining: {min_captured_rows: 50}
""")
BUCKET = "artifacts"


@pytest.fixture
def world():
    store, registry = InMemoryObjectStore(), Registry(InMemoryTable())
    pipeline, notifier = InMemoryPipelineRunner(), InMemoryNotifier()
    registry.declare_dataset(CONTRACT)
    rng = np.random.default_rng(0)
    tenure = rng.integers(0, 60, 2000)
    plans = rng.choice(["basic", "pro"], 2000, p=[0.7, 0.3])
    labels = [{"label": "yes" if t < 10 else "no"} for t in tenure]
    baseline = json.dumps(build_profile(CONTRACT, {"tenure_months": tenure, "plan": plans}, labels)).encode()
    metrics = {"f1_macro": 0.8, "accuracy": 0.8}
    # The monitor reads the champion's baseline, never its model: no ONNX is needed here.
    champion = register_model(
        registry, store, BUCKET, "churn", b"", dataset_rows=2000, metrics=metrics, baseline=baseline
    )
    register_dataset(registry, "churn", champion.baseline, rows=700, source_key="k2")  # 700 rows newer than its data
    clock = Clock()
    monitor = DriftMonitor(store, registry, pipeline, notifier, BUCKET, clock=clock)
    return World(monitor, store, pipeline, notifier, registry, clock)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


class World:
    def __init__(self, monitor, store, pipeline, notifier, registry, clock) -> None:
        self.monitor, self.store, self.pipeline = monitor, store, pipeline
        self.notifier, self.registry, self.clock = notifier, registry, clock
        self.batches = 0

    def capture(self, records, version=1, retention="30d", hour=10, name=None):
        """One gzipped batch as Firehose writes it, one line per request of ten records."""
        self.batches += 1
        outputs = [
            {
                "label": label,
                "probabilities": {"no": 0.2 if label == "yes" else 0.8, "yes": 0.8 if label == "yes" else 0.2},
            }
            for label in ("yes" if r["tenure_months"] < 10 else "no" for r in records)
        ]
        lines = []
        for start in range(0, len(records), 10):
            lines += capture_lines(
                model="churn",
                version=version,
                retention=retention,
                request_id=f"r{self.batches}-{start}",
                at="2026-11-24T10:00:00.000000Z",
                features=CONTRACT.feature_names,
                records=records[start : start + 10],
                outputs=outputs[start : start + 10],
                classes=["no", "yes"],
            )
        name = name or f"loopml-captures-1-2026-11-24-{hour:02d}-00-{self.batches:02d}-x.gz"
        key = f"captures/{retention}/churn/2026/11/24/{hour:02d}/{name}"
        self.store.put(BUCKET, key, gzip.compress("".join(line + "\n" for line in lines).encode()))
        return key

    def check(self):
        return self.monitor.check("churn")

    def later(self, hours):
        self.clock.now += timedelta(hours=hours)


def _traffic(n, shifted, seed=1):
    rng = np.random.default_rng(seed)
    tenure = rng.integers(0, 8, n) if shifted else rng.integers(0, 60, n)
    plans = rng.choice(["basic", "pro"], n, p=[0.1, 0.9] if shifted else [0.7, 0.3])
    return [{"tenure_months": int(t), "plan": str(p)} for t, p in zip(tenure, plans, strict=True)]


def test_too_little_traffic_waits_and_keeps_it_for_next_time(world):
    world.capture(_traffic(20, shifted=True))
    assert world.check().status == "insufficient-data"
    world.capture(_traffic(60, shifted=True, seed=2))
    result = world.check()
    assert result.status == "drift" and result.rows == 80 and result.window["objects"] == 2


def test_stable_traffic_is_ok_silent_and_moves_the_cursor(world):
    world.capture(_traffic(500, shifted=False))
    result = world.check()
    assert result.status == "ok" and result.drifted == [] and result.rows == 500
    assert world.notifier.sent == [] and world.pipeline.executions() == []
    assert world.registry.audit_records()[-1].action == "model.monitoring.ok"
    assert world.check().rows == 0  # the batch is behind the cursor now


def test_drift_alerts_audits_reports_and_retrains_on_the_latest_data(world):
    world.capture(_traffic(500, shifted=True))
    result = world.check()
    assert result.status == "drift" and {"tenure_months", "plan"} <= set(result.drifted)
    assert result.episode == "opened" and result.retraining.start
    [execution] = world.pipeline.executions()
    assert execution.input["run"]["dataset_version"] == 2 and execution.input["run"]["trigger"] == "drift"
    [alert] = world.notifier.sent
    assert "tenure_months" in alert.message and result.report_uri in alert.message
    html = world.store.get(BUCKET, result.report_uri.split("/", 3)[3]).decode()
    assert html.startswith("<!DOCTYPE html>") and "tenure_months" in html
    record = world.registry.audit_records()[-1]
    assert record.action == "model.monitoring.drift" and record.details["alert"] == result.alert
    document = result.to_dict()
    assert document["features"]["tenure_months"]["test"] == "ks" and document["features"]["plan"]["test"] == "chi2"
    assert document["prediction"]["drifted"] is True


def test_one_alert_per_drift_episode(world):
    world.capture(_traffic(500, shifted=True))
    assert world.check().episode == "opened"
    world.later(1)
    world.capture(_traffic(500, shifted=True, seed=3))
    second = world.check()
    assert second.status == "drift" and second.episode == "continues" and second.alert is None
    assert "already in progress" in second.retraining.reason and len(world.pipeline.executions()) == 1
    world.later(1)
    world.capture(_traffic(500, shifted=False, seed=4))
    assert world.check().episode == "closed"
    world.later(1)
    world.capture(_traffic(500, shifted=True, seed=5))
    assert world.check().episode == "opened"
    assert len(world.notifier.sent) == 2


def test_retraining_waits_out_the_cooldown(world):
    world.capture(_traffic(500, shifted=True))
    first = world.check()
    world.pipeline.finish(first.retraining.execution)
    world.capture(_traffic(500, shifted=False, seed=2))
    world.check()  # closes the episode
    world.later(2)
    world.capture(_traffic(500, shifted=True, seed=3))
    again = world.check()
    assert not again.retraining.start and "cooldown_hours (6)" in again.retraining.reason
    assert world.registry.audit_records()[-1].details["retraining"]["decision"] == "skipped"


def test_the_limits_each_name_their_setting():
    now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    rules = Retraining(cooldown_hours=1, min_captured_rows=100, min_new_rows=10, daily_budget=2)

    def decide(**changes):
        arguments = {"now": now, "rows": 500, "new_rows": 50, "recent_starts": [], "running": None} | changes
        return decide_retraining(rules, **arguments)

    assert decide().start
    assert "in progress: run-1" in decide(running="run-1").reason
    assert "min_captured_rows (100)" in decide(rows=99).reason
    assert "min_new_rows (10)" in decide(new_rows=9).reason and "loopml pipeline start" in decide(new_rows=9).reason
    assert "cooldown_hours (1)" in decide(recent_starts=["2026-11-24T11:30:00.000000Z"]).reason
    two = ["2026-11-24T01:00:00.000000Z", "2026-11-24T05:00:00.000000Z"]
    assert "daily_budget (2)" in decide(recent_starts=two).reason
    assert decide(recent_starts=["2026-11-23T23:00:00.000000Z", *two[:1]]).start  # yesterday's does not count


def test_unchanged_data_is_not_retrained(world):
    world.registry.dataset_versions("churn")[-1]  # v2 exists; a champion trained on it leaves nothing new
    version = world.registry.champion_version("churn")
    world.registry.table.put_unconditionally(
        {
            **world.registry.table.get("MODEL#churn", "V#00000001"),
            "doc": json.dumps({**version.model_dump(), "dataset_version": 2}),
        }
    )
    world.capture(_traffic(500, shifted=True))
    result = world.check()
    assert result.status == "drift" and not result.retraining.start and "min_new_rows" in result.retraining.reason
    assert world.pipeline.executions() == []


def test_a_batch_filed_late_under_an_hour_already_read_is_counted_once(world):
    world.clock.now = datetime(2026, 11, 24, 10, 30, tzinfo=UTC)
    world.capture(_traffic(300, shifted=False), hour=10, name="b-10-29.gz")
    assert world.check().rows == 300
    world.clock.now = datetime(2026, 11, 24, 11, 5, tzinfo=UTC)
    world.capture(_traffic(300, shifted=False, seed=2), hour=11, name="b-11-04.gz")
    world.capture(_traffic(200, shifted=False, seed=3), hour=10, name="b-11-03.gz")  # buffered since 10:58
    assert world.check().rows == 500
    world.clock.now = datetime(2026, 11, 24, 11, 20, tzinfo=UTC)  # hour 10 is closed now
    world.capture(_traffic(100, shifted=False, seed=4), hour=10, name="b-11-00.gz")  # later still
    again = world.check()
    assert again.rows == 100  # read once: the cursor moves past hour 10 only after this check
    state = world.registry.monitor_state("churn")
    assert state.cursor == "2026/11/24/10/b-11-03.gz" and state.open_batches == ["2026/11/24/11/b-11-04.gz"]
    assert world.check().rows == 0


def test_captures_of_other_versions_are_counted_apart(world):
    world.capture(_traffic(500, shifted=True), version=0)
    result = world.check()
    assert result.status == "insufficient-data" and result.window["other_versions"] == {"0": 500}


def test_a_batch_that_is_not_capture_lines_is_skipped_and_named(world):
    world.store.put(BUCKET, "captures/30d/churn/2026/11/24/10/zz-bad.gz", gzip.compress(b"{not json\n"))
    world.capture(_traffic(500, shifted=False))
    result = world.check()
    assert result.status == "ok" and result.rows == 500
    assert any("zz-bad.gz" in note for note in result.notes)


class FlakyNotifier(InMemoryNotifier):
    def __init__(self) -> None:
        super().__init__()
        self.down = True

    def publish(self, subject: str, message: str) -> str:
        if self.down:
            raise ConnectionError("SNS unreachable")
        return super().publish(subject, message)


def test_an_alert_that_failed_to_publish_is_sent_by_the_next_check_once(world):
    flaky = FlakyNotifier()
    world.monitor.notifier = flaky
    world.capture(_traffic(500, shifted=True))
    with pytest.raises(CheckFailedError, match="SNS unreachable"):
        world.monitor.check_all()
    assert [a.id for a in world.registry.pending_alerts()] and flaky.sent == []
    flaky.down = False
    world.monitor.check_all()
    world.monitor.check_all()
    assert len(flaky.sent) == 1 and world.registry.pending_alerts() == []


def test_a_check_retried_after_its_write_failed_starts_and_alerts_once(world):
    world.capture(_traffic(500, shifted=True))
    record_check = world.registry.record_check

    def unreachable(*args, **kwargs):
        raise ConnectionError("DynamoDB unreachable")

    world.registry.record_check = unreachable
    with pytest.raises(ConnectionError):
        world.check()
    world.registry.record_check = record_check
    [started] = world.pipeline.executions()
    retried = world.check()
    assert retried.status == "drift" and retried.alert is not None
    assert retried.retraining.start and retried.retraining.execution == started.name  # the same run, recorded
    assert len(world.pipeline.executions()) == 1 and len(world.notifier.sent) == 1
    assert [r.action for r in world.registry.audit_records()].count("model.monitoring.drift") == 1


def _labels(world, accuracy, rows=200, day="2026-11-24", source="labels/churn/a.csv"):
    """Labelled predictions of v1 recorded as a label file would record them, `accuracy` of them right."""
    rng = np.random.default_rng(rows)
    truth = rng.integers(0, 2, rows)
    right = rng.random(rows) < accuracy
    predicted = np.where(right, truth, 1 - truth)
    probabilities = np.stack([1.0 - predicted * 0.8 - 0.1, predicted * 0.8 + 0.1], axis=1)
    counts = classification_counts(("no", "yes"), truth, predicted, probabilities)
    outcome = UploadOutcome(
        dataset="churn", source_key=source, status=UploadStatus.ACCEPTED, summary="", at="t", rows=rows
    )
    world.registry.record_labels(outcome, {(1, day): counts})


def test_live_performance_within_tolerance_is_reported_and_silent(world):
    _labels(world, accuracy=0.85)
    result = world.check()
    performance = result.performance
    assert performance["metric"] == "f1_macro" and performance["holdout"] == 0.8 and not performance["dropped"]
    assert performance["latest"]["labels"] == 200 and performance["latest"]["value"] > 0.8 * 0.9
    assert world.notifier.sent == [] and result.status == "insufficient-data"


def test_a_performance_drop_alerts_once_and_retrains_without_captured_traffic(world):
    _labels(world, accuracy=0.55)
    result = world.check()
    assert result.performance_dropped and result.performance_episode == "opened"
    assert result.retraining.start and "live f1_macro" in world.pipeline.executions()[0].input["run"]["reason"]
    [alert] = world.notifier.sent
    assert alert.subject.startswith("LoopML performance: churn") and "holdout 0.800" in alert.message
    assert world.registry.audit_records()[-1].details["performance"]["dropped"] is True
    again = world.check()
    assert again.performance_episode == "continues" and len(world.notifier.sent) == 1
    _labels(world, accuracy=0.95, rows=300, day="2026-11-25", source="labels/churn/b.csv")
    assert world.check().performance_episode == "closed"


def test_live_performance_is_read_over_the_last_ninety_days_only(world):
    from loopml_core.logic.monitor import PERFORMANCE_HISTORY_DAYS

    _labels(world, accuracy=0.55, day="2026-08-01", source="labels/churn/old.csv")  # long before the check's day
    _labels(world, accuracy=0.85, day="2026-11-24")
    assert PERFORMANCE_HISTORY_DAYS == 90
    result = world.check()
    assert [w["window"] for w in result.performance["windows"]] == ["2026-11-24"] and not result.performance_dropped
    world.later(24 * 120)  # the newer labels are past the bound too
    assert world.check().performance is None


def test_a_second_performance_episode_alerts_and_retrains_again(world):
    _labels(world, accuracy=0.55, source="labels/churn/1.csv")
    first = world.check()
    world.pipeline.finish(first.retraining.execution)
    _labels(world, accuracy=0.97, rows=400, day="2026-11-25", source="labels/churn/2.csv")
    assert world.check().performance_episode == "closed"
    world.later(24)
    _labels(world, accuracy=0.5, rows=500, day="2026-11-26", source="labels/churn/3.csv")
    again = world.check()
    assert again.performance_episode == "opened" and again.alert != first.alert
    assert len(world.notifier.sent) == 2 and again.retraining.start
    assert again.retraining.execution != first.retraining.execution and len(world.pipeline.executions()) == 2


def test_a_performance_drop_is_judged_on_labels_not_on_captured_rows(world):
    _labels(world, accuracy=0.55, rows=150)  # over min_labels (100), under retraining.min_captured_rows (50 here)
    result = world.check()
    [execution] = world.pipeline.executions()
    assert result.retraining.start and execution.input["run"]["trigger"] == "performance"


def test_lines_of_another_model_in_a_batch_are_not_counted(world):
    key = world.capture(_traffic(300, shifted=False))
    lines = gzip.decompress(world.store.get(BUCKET, key)).decode().splitlines()
    foreign = [line.replace('"model":"churn"', '"model":"loans"') for line in lines]
    world.store.put(BUCKET, key.replace("x.gz", "y.gz"), gzip.compress(("\n".join(foreign) + "\n").encode()))
    assert world.check().rows == 300


def test_a_challengers_shadow_lines_are_not_counted_as_served_traffic(world):
    # Given traffic the champion answered, and the same requests scored in shadow by v1 itself (as after a promotion
    # of the challenger that shadowed it) and by v2
    key = world.capture(_traffic(300, shifted=False))
    lines = gzip.decompress(world.store.get(BUCKET, key)).decode().splitlines()
    shadow = [line[:-1] + ',"shadow":true}' for line in lines]
    shadow += [line.replace('"version":1', '"version":2') for line in shadow]
    world.store.put(BUCKET, key.replace("x.gz", "s.gz"), gzip.compress(("\n".join(shadow) + "\n").encode()))
    # When the check counts the window
    result = world.check()
    # Then only the answered predictions are in it
    assert result.rows == 300 and "2" not in result.window["other_versions"]


def test_a_feature_the_contract_no_longer_has_is_left_out_not_fatal(world):
    world.capture(_traffic(300, shifted=False))
    narrower = CONTRACT.model_copy(update={"features": CONTRACT.features[:1]})
    world.registry.declare_dataset(narrower)
    result = world.check()
    assert result.status == "ok" and set(result.to_dict()["features"]) == {"tenure_months"}


def test_one_models_failure_does_not_stop_the_others(world):
    world.capture(_traffic(300, shifted=False))
    world.registry.table.put_unconditionally({"pk": "MODELS", "sk": "ghost"})  # listed, but broken: no META
    check = world.monitor.check

    def failing(model):
        if model == "ghost":
            raise RuntimeError("the ghost model's baseline is unreadable")
        return check(model)

    world.monitor.check = failing
    with pytest.raises(CheckFailedError, match="ghost") as raised:
        world.monitor.check_all()
    statuses = {r.model: r.status for r in raised.value.results}
    assert statuses == {"churn": "ok", "ghost": "failed"}


def test_a_new_champion_starts_without_the_old_ones_episodes(world):
    world.capture(_traffic(500, shifted=True))
    assert world.check().episode == "opened"
    version = world.registry.champion_version("churn")
    world.registry.register_model_version(
        "churn",
        "run-2",
        lambda n: version.model_copy(update={"version": n, "execution": "run-2"}),
        promote=True,
        trigger="drift",
    )
    world.later(1)
    world.capture(_traffic(500, shifted=True, seed=7), version=2)
    result = world.check()
    assert result.version == 2 and result.episode == "opened" and len(world.notifier.sent) == 2


def test_too_few_labels_are_shown_but_not_judged(world):
    _labels(world, accuracy=0.3, rows=50)  # under monitoring.performance.min_labels (100)
    result = world.check()
    assert result.performance["windows"][0]["labels"] == 50 and result.performance["latest"] is None
    assert not result.performance_dropped and world.notifier.sent == []


def test_labels_that_arrive_before_their_captures_are_matched_by_a_later_check(world):
    from loopml_core.logic.ingest import Upload
    from loopml_core.logic.labels import LabelIngest

    traffic = _traffic(300, shifted=False)
    truth = ["yes" if r["tenure_months"] < 10 else "no" for r in traffic]  # the model is right on every one
    rows = [f"r1-{start},{i},{truth[start + i]}" for start in range(0, 300, 10) for i in range(10)]
    body = ("request_id,index,churned\n" + "\n".join(rows) + "\n").encode()
    stored = world.store.put("data", "labels/churn/early.csv", body)
    ingest = LabelIngest(world.store, world.registry, BUCKET, clock=world.clock)
    outcome = ingest.ingest(Upload("data", "labels/churn/early.csv", stored.version_id))
    assert outcome.status == "accepted" and "0 joined" in outcome.summary and "each hourly check" in outcome.summary
    assert world.registry.performance("churn", 1) == {}
    world.capture(traffic)  # Firehose delivers the batch after the labels arrived
    result = world.check()
    assert result.performance["windows"][0]["labels"] == 300 and result.performance["latest"]["value"] == 1.0
    [(day, counts)] = world.registry.performance("churn", 1).items()
    assert counts.rows == 300  # recorded with the check
    world.capture(traffic)  # later traffic: every label has matched, none waits any more
    world.check()
    assert world.registry.performance("churn", 1)[day].rows == 300


def test_a_model_without_champion_is_skipped():
    registry = Registry(InMemoryTable())
    monitor = DriftMonitor(InMemoryObjectStore(), registry, InMemoryPipelineRunner(), InMemoryNotifier(), BUCKET)
    assert monitor.check("ghost").status == "no-champion"
