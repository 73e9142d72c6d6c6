"""The drift check's decisions, on fakes: when it alerts, when it retrains, and when it must not."""

from __future__ import annotations

import json

import numpy as np
import pytest

from loopml_core.adapters.notifier import InMemoryNotifier
from loopml_core.adapters.object_store import InMemoryObjectStore
from loopml_core.adapters.pipeline import InMemoryPipelineRunner
from loopml_core.adapters.table import InMemoryTable
from loopml_core.contract import load_contract
from loopml_core.drift import build_profile
from loopml_core.logic.monitor import DriftMonitor
from loopml_core.models import DatasetVersion, ModelVersion, ObjectRef, UploadOutcome, UploadStatus
from loopml_core.registry import Registry

CONTRACT = load_contract("""
name: churn
task: classification
target: churned
features:
  - {name: tenure_months, type: int, min: 0}
  - {name: plan, type: category, values: [basic, pro]}
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
    baseline = store.put(
        BUCKET,
        "baseline.json",
        json.dumps(build_profile(CONTRACT, {"tenure_months": tenure, "plan": plans}, labels)).encode(),
    )
    ref = ObjectRef(bucket=BUCKET, key="baseline.json", version_id=baseline.version_id)
    registry.register_dataset_version(
        "churn",
        upload=UploadOutcome(
            dataset="churn", source_key="k", status=UploadStatus.ACCEPTED, summary="", sha256="x", at="t"
        ),
        build=lambda n: DatasetVersion(
            dataset="churn",
            version=n,
            object=ref,
            source_key="k",
            sha256="x",
            rows=2000,
            contract_version=1,
            created_at="t",
        ),
    )
    registry.register_model_version(
        "churn",
        "run-1",
        lambda n: ModelVersion(
            model="churn",
            version=n,
            task="classification",
            dataset_version=1,
            execution="run-1",
            artifact=ref,
            baseline=ref,
            metrics={},
            code_version="t",
            promoted=True,
            decision="first",
            created_at="t",
        ),
        promote=True,
        trigger="upload",
    )
    monitor = DriftMonitor(store, registry, pipeline, notifier, BUCKET, threshold=0.2, min_rows=50)
    return monitor, store, pipeline, notifier, registry


def _capture(store, records, version=1, name="000"):
    outputs = [{"label": "yes" if r["tenure_months"] < 10 else "no"} for r in records]
    store.put(
        BUCKET,
        f"captures/churn/{name}.json",
        json.dumps({"version": version, "records": records, "outputs": outputs}).encode(),
    )


def _traffic(n, shifted, seed=1):
    rng = np.random.default_rng(seed)
    tenure = rng.integers(0, 8, n) if shifted else rng.integers(0, 60, n)
    plans = rng.choice(["basic", "pro"], n, p=[0.1, 0.9] if shifted else [0.7, 0.3])
    return [{"tenure_months": int(t), "plan": str(p)} for t, p in zip(tenure, plans, strict=True)]


def test_too_little_traffic_waits_and_keeps_it_for_next_time(world):
    monitor, store, _pipeline, _notifier, _ = world
    _capture(store, _traffic(20, shifted=True), name="001")
    assert monitor.check("churn").status == "insufficient-data"
    _capture(store, _traffic(60, shifted=True, seed=2), name="002")
    outcome = monitor.check("churn")
    assert outcome.status == "drift" and outcome.rows == 80


def test_stable_traffic_is_ok_and_silent(world):
    monitor, store, pipeline, notifier, _ = world
    _capture(store, _traffic(500, shifted=False))
    outcome = monitor.check("churn")
    assert outcome.status == "ok" and outcome.drifted == []
    assert notifier.sent == [] and pipeline.executions() == []


def test_drift_alerts_audits_and_retrains_on_the_latest_data(world):
    monitor, store, pipeline, notifier, registry = world
    _capture(store, _traffic(500, shifted=True))
    outcome = monitor.check("churn")
    assert outcome.status == "drift" and "tenure_months" in outcome.drifted and "plan" in outcome.drifted
    [execution] = pipeline.executions()
    assert execution.input["run"] == {
        "model": "churn",
        "dataset_version": 1,
        "trigger": "drift",
        "reason": outcome.action and execution.input["run"]["reason"],
    }
    assert "tenure_months" in notifier.sent[0].message
    assert registry.audit_records()[-1].action == "model.drift.detected"


def test_no_second_retrain_while_one_is_running(world):
    monitor, store, pipeline, notifier, _ = world
    _capture(store, _traffic(500, shifted=True), name="001")
    first = monitor.check("churn")
    _capture(store, _traffic(500, shifted=True, seed=3), name="002")
    second = monitor.check("churn")
    assert second.status == "drift" and "not restarted" in second.action
    assert second.execution == first.execution and len(pipeline.executions()) == 1
    assert len(notifier.sent) == 2  # still alerts: someone should know


def test_captures_of_an_older_champion_are_ignored(world):
    monitor, store, *_ = world
    _capture(store, _traffic(500, shifted=True), version=0)
    assert monitor.check("churn").status == "insufficient-data"


def test_a_model_without_champion_is_skipped():
    registry = Registry(InMemoryTable())
    monitor = DriftMonitor(InMemoryObjectStore(), registry, InMemoryPipelineRunner(), InMemoryNotifier(), BUCKET)
    assert monitor.check("ghost").status == "no-champion"
