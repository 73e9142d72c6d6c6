"""Starting training runs: one rule for every trigger."""

from __future__ import annotations

import re
from dataclasses import dataclass

from loopml_core.adapters.pipeline import Execution, PipelineRunner
from loopml_core.clock import utc_now


@dataclass(frozen=True)
class StartDecision:
    started: bool
    execution: Execution | None
    reason: str


def execution_name(model: str, dataset_version: int, trigger: str, unique: str = "") -> str:
    """Deterministic names make a redelivered trigger start nothing new (Step Functions rejects a reused name)."""
    parts = [model, f"dv{dataset_version}", trigger] + ([unique] if unique else [])
    return re.sub(r"[^A-Za-z0-9_-]", "-", "-".join(parts))[:80]


def start_training(
    pipeline: PipelineRunner,
    *,
    model: str,
    dataset_version: int,
    trigger: str,
    reason: str,
    skip_if_running: bool,
    unique: str | None = None,
) -> StartDecision:
    """Start the pipeline for `model` on `dataset_version`.

    Drift-triggered runs pass `skip_if_running`: a retrain already under way will pick up the same data, so a second
    one would only race it. `unique` ends the execution name (default: the time for a trigger other than upload); a
    caller that passes one derived from what triggered the run makes a retried start the same execution.
    """
    if skip_if_running:
        running = pipeline.running_for(model)
        if running:
            return StartDecision(False, running[0], f"a run is already in progress: {running[0].name}")
    if unique is None:
        unique = "" if trigger == "upload" else utc_now().strftime("%Y%m%dT%H%M%S")
    name = execution_name(model, dataset_version, trigger, unique)
    payload = {"run": {"model": model, "dataset_version": dataset_version, "trigger": trigger, "reason": reason}}
    execution = pipeline.start(name, payload)
    return StartDecision(True, execution, reason)
