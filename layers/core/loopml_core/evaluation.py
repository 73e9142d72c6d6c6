"""Evaluation: ONNX parity with scikit-learn, and candidate against champion on the same holdout.

numpy and onnxruntime only (through `loopml_core.serving`); the metrics are computed here by hand so that the
inference layer needs no scikit-learn. They match `sklearn.metrics` (tested).
"""

from __future__ import annotations

import csv
import io
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import numpy as np

from loopml_core.contract import DatasetContract, Task
from loopml_core.serving import ModelContractError, OnnxModel

DEFAULT_PROBABILITY_TOLERANCE = 0.06
DEFAULT_VALUE_TOLERANCE = 1e-3
MIN_LABEL_AGREEMENT = 0.995
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_CONFIDENCE = 0.95
IMPORTANCE_REPEATS = 5
EVALUATION_SEED = 7
# Cells of one block of resample indices (resamples x holdout rows): bounds the bootstrap's memory at ~32 MB of
# int64 indices whatever the holdout's size.
BOOTSTRAP_BLOCK_CELLS = 1 << 22


class PrimaryMetric(NamedTuple):
    name: str
    higher_is_better: bool


PRIMARY_METRIC: dict[str, PrimaryMetric] = {
    Task.CLASSIFICATION: PrimaryMetric("accuracy", True),
    Task.REGRESSION: PrimaryMetric("rmse", False),
}


def _parse_cell(text: str | None, numeric: bool, column: str, line: int) -> float | str | None:
    if text is None:
        raise ValueError(f"holdout line {line}: the row is shorter than the header (no '{column}')")
    if text == "":
        return None
    if not numeric:
        return text
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"holdout line {line}: '{column}' is not a number: {text!r}") from None


def read_holdout(contract: DatasetContract, csv_bytes: bytes) -> tuple[list[dict[str, Any]], list[Any]]:
    """Parse a holdout CSV into serving records and targets, typed per contract.

    Numeric features become floats, categories strings, empty cells None. Targets are strings for classification
    and floats for regression.
    """
    reader = csv.DictReader(io.StringIO(csv_bytes.decode("utf-8-sig")))
    header = reader.fieldnames or []
    missing = [c for c in [*contract.feature_names, contract.target] if c not in header]
    if missing:
        raise ValueError(f"holdout CSV lacks columns: {', '.join(missing)}")
    classification = contract.task is Task.CLASSIFICATION
    records: list[dict[str, Any]] = []
    targets: list[Any] = []
    for line, row in enumerate(reader, start=2):
        records.append({f.name: _parse_cell(row[f.name], f.is_numeric, f.name, line) for f in contract.features})
        target = _parse_cell(row[contract.target], not classification, contract.target, line)
        if target is None:
            raise ValueError(f"holdout line {line}: empty target '{contract.target}'")
        targets.append(target)
    return records, targets


def _classification_metrics(targets: Sequence[Any], outputs: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    truth = np.asarray([str(t) for t in targets], dtype=object)
    predicted = np.asarray([str(o["label"]) for o in outputs], dtype=object)
    accuracy = float(np.mean(truth == predicted))

    f1_scores = []
    for label in sorted(set(truth.tolist()) | set(predicted.tolist())):
        tp = float(np.sum((truth == label) & (predicted == label)))
        fp = float(np.sum((truth != label) & (predicted == label)))
        fn = float(np.sum((truth == label) & (predicted != label)))
        f1_scores.append(2 * tp / (2 * tp + fp + fn))
    f1_macro = float(np.mean(f1_scores))

    # A true class the model never saw has probability 0, clipped like sklearn clips to the float64 epsilon.
    eps = float(np.finfo(np.float64).eps)
    p_true = np.asarray(
        [float(o["probabilities"].get(t, 0.0)) for o, t in zip(outputs, truth.tolist(), strict=True)],
        dtype=np.float64,
    )
    log_loss = float(np.mean(-np.log(np.clip(p_true, eps, 1 - eps))))
    metrics = {"accuracy": accuracy, "f1_macro": f1_macro, "log_loss": log_loss}
    classes = sorted(outputs[0]["probabilities"])
    scores = np.asarray([[float(o["probabilities"].get(c, 0.0)) for c in classes] for o in outputs], dtype=np.float64)
    auc = roc_auc(truth, classes, scores)
    if auc is not None:
        metrics["roc_auc"] = auc
    return metrics


def _binary_auc(positive: np.ndarray, scores: np.ndarray) -> float | None:
    """Mann-Whitney AUC with tied scores sharing their average rank."""
    n_positive = int(positive.sum())
    n_negative = positive.size - n_positive
    if n_positive == 0 or n_negative == 0:
        return None
    _distinct, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    average_rank = np.cumsum(counts) - (counts - 1) / 2.0  # 1-based ranks, ties averaged
    ranks = average_rank[inverse]
    return float((ranks[positive].sum() - n_positive * (n_positive + 1) / 2) / (n_positive * n_negative))


def roc_auc(truth: np.ndarray, classes: list[str], scores: np.ndarray) -> float | None:
    """ROC AUC as scikit-learn's `roc_auc_score`: the second class's for two classes, one-vs-rest macro for more."""
    if len(classes) == 2:
        return _binary_auc(truth == classes[1], scores[:, 1])
    per_class = [_binary_auc(truth == c, scores[:, i]) for i, c in enumerate(classes)]
    known = [a for a in per_class if a is not None]
    return float(np.mean(known)) if known else None


def _regression_metrics(targets: Sequence[Any], outputs: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    y = np.asarray([float(t) for t in targets], dtype=np.float64)
    p = np.asarray([float(o["value"]) for o in outputs], dtype=np.float64)
    residual = y - p
    ss_res = float(np.sum(residual**2))
    ss_tot = float(np.sum((y - np.mean(y)) ** 2))
    # sklearn's r2_score with force_finite: a constant target scores 1 when predicted exactly, else 0.
    r2 = (1.0 if ss_res == 0 else 0.0) if ss_tot == 0 else 1.0 - ss_res / ss_tot
    return {
        "rmse": float(np.sqrt(np.mean(residual**2))),
        "mae": float(np.mean(np.abs(residual))),
        "r2": r2,
    }


def compute_metrics(task: Task | str, targets: Sequence[Any], outputs: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Holdout metrics from serving-shaped outputs.

    classification: accuracy, f1_macro, log_loss, roc_auc; regression: rmse, mae, r2.
    """
    if len(targets) != len(outputs):
        raise ValueError(f"{len(outputs)} outputs for {len(targets)} targets")
    if not targets:
        raise ValueError("cannot compute metrics on an empty holdout")
    if Task(task) is Task.CLASSIFICATION:
        return _classification_metrics(targets, outputs)
    return _regression_metrics(targets, outputs)


@dataclass(frozen=True)
class ParityReport:
    """How closely the ONNX graph reproduces scikit-learn on the holdout."""

    ok: bool
    rows: int
    message: str
    label_agreement: float | None = None
    max_probability_difference: float | None = None
    max_value_difference: float | None = None
    max_relative_value_difference: float | None = None
    probability_tolerance: float | None = None
    value_tolerance: float | None = None
    min_label_agreement: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return asdict(self)


def check_parity(
    task: Task | str,
    onnx_outputs: Sequence[Mapping[str, Any]],
    reference_outputs: Sequence[Mapping[str, Any]],
    *,
    probability_tolerance: float = DEFAULT_PROBABILITY_TOLERANCE,
    value_tolerance: float = DEFAULT_VALUE_TOLERANCE,
    min_label_agreement: float = MIN_LABEL_AGREEMENT,
) -> ParityReport:
    """Compare ONNX outputs with scikit-learn's reference outputs for the same rows.

    Classification: labels must agree on at least `min_label_agreement` of rows and every probability must be within
    `probability_tolerance` (absolute). Regression: every value must be within `value_tolerance` relative to
    max(|reference|, RMS of the reference values), so that float32 noise around a zero prediction is not a failure.
    """
    rows = len(reference_outputs)
    if len(onnx_outputs) != rows:
        return ParityReport(False, rows, f"ONNX produced {len(onnx_outputs)} outputs for {rows} reference rows")
    if rows == 0:
        return ParityReport(False, 0, "no holdout rows to check parity on")

    if Task(task) is Task.CLASSIFICATION:
        agree = sum(str(o["label"]) == str(r["label"]) for o, r in zip(onnx_outputs, reference_outputs, strict=True))
        agreement = agree / rows
        max_diff = 0.0
        for o, r in zip(onnx_outputs, reference_outputs, strict=True):
            po, pr = o["probabilities"], r["probabilities"]
            for cls in set(po) | set(pr):
                max_diff = max(max_diff, abs(float(po.get(cls, 0.0)) - float(pr.get(cls, 0.0))))
        ok = agreement >= min_label_agreement and max_diff <= probability_tolerance
        message = (
            f"ONNX labels agree with scikit-learn on {agreement:.2%} of {rows} holdout rows "
            f"(need {min_label_agreement:.1%}); largest probability difference {max_diff:.2g} "
            f"(tolerance {probability_tolerance:g} absolute: the graph computes in float32)"
        )
        return ParityReport(
            ok,
            rows,
            ("parity ok: " if ok else "parity FAILED: ") + message,
            label_agreement=agreement,
            max_probability_difference=max_diff,
            probability_tolerance=probability_tolerance,
            min_label_agreement=min_label_agreement,
        )

    onnx_values = np.asarray([float(o["value"]) for o in onnx_outputs], dtype=np.float64)
    reference = np.asarray([float(r["value"]) for r in reference_outputs], dtype=np.float64)
    diff = np.abs(onnx_values - reference)
    scale = np.maximum(np.abs(reference), max(float(np.sqrt(np.mean(reference**2))), np.finfo(np.float64).tiny))
    relative = float(np.max(diff / scale))
    ok = bool(np.all(np.isfinite(onnx_values))) and relative <= value_tolerance
    message = (
        f"largest ONNX vs scikit-learn difference on {rows} holdout rows is {float(diff.max()):.3g} "
        f"({relative:.2g} relative to max(|reference|, RMS of reference); tolerance {value_tolerance:g}: "
        f"the graph computes in float32)"
    )
    return ParityReport(
        ok,
        rows,
        ("parity ok: " if ok else "parity FAILED: ") + message,
        max_value_difference=float(diff.max()),
        max_relative_value_difference=relative,
        value_tolerance=value_tolerance,
    )


@dataclass(frozen=True)
class Evaluation:
    """The evaluation step's verdict on a candidate model."""

    parity: ParityReport
    candidate_metrics: dict[str, float]
    champion_metrics: dict[str, float] | None
    primary_metric: str
    higher_is_better: bool
    promote: bool
    reason: str
    holdout_rows: int
    champion_error: str | None = None
    # For the model card (see the section below `evaluate`): percentile bootstrap intervals of every metric,
    # `{metric: {"low", "high"}}`; the paired interval of candidate minus champion on the primary metric; permutation
    # importance per feature; fairness across the contract's sensitive features; and how they were computed.
    metric_intervals: dict[str, dict[str, float]] = field(default_factory=dict)
    champion_metric_intervals: dict[str, dict[str, float]] | None = None
    comparison: dict[str, Any] | None = None
    feature_importance: list[dict[str, Any]] = field(default_factory=list)
    fairness: dict[str, Any] | None = None
    method: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form for the Step Functions state."""
        data = asdict(self)
        data["parity"] = self.parity.to_dict()
        return data


def _pair(a: float, b: float) -> tuple[str, str]:
    """Format two metric values with enough decimals that different values never print the same."""
    for decimals in range(3, 13):
        left, right = f"{a:.{decimals}f}", f"{b:.{decimals}f}"
        if left != right or a == b:
            return left, right
    return repr(a), repr(b)


def evaluate(
    contract: DatasetContract,
    candidate_onnx: bytes,
    champion_onnx: bytes | None,
    holdout_csv: bytes,
    reference_predictions: Sequence[Mapping[str, Any]],
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    importance_repeats: int = IMPORTANCE_REPEATS,
    seed: int = EVALUATION_SEED,
) -> Evaluation:
    """Check the candidate's ONNX parity with scikit-learn, then score candidate and champion on the same holdout.

    The candidate is promoted when parity holds and either there is no champion, the champion no longer fits the
    contract, or the candidate is strictly better on the task's primary metric. Beside the verdict, for the model
    card: bootstrap intervals of every metric (`resamples` resamples, seeded), the paired interval of the difference
    with the champion, permutation importance (`importance_repeats` shuffles per feature) and group fairness.
    """
    records, targets = read_holdout(contract, holdout_csv)
    rows = len(records)
    primary = PRIMARY_METRIC[contract.task]

    candidate_model = OnnxModel(candidate_onnx, contract)
    candidate_outputs = candidate_model.predict(records)
    parity = check_parity(contract.task, candidate_outputs, reference_predictions)
    candidate_metrics = compute_metrics(contract.task, targets, candidate_outputs)
    candidate_score = candidate_metrics[primary.name]
    # Champion and candidate are resampled with the same seed, so their samples pair up for the difference.
    candidate_samples = bootstrap_samples(
        PredictionArrays.from_outputs(contract.task, targets, candidate_outputs), resamples=resamples, seed=seed
    )
    confidence = BOOTSTRAP_CONFIDENCE

    champion_metrics: dict[str, float] | None = None
    champion_error: str | None = None
    champion_intervals: dict[str, dict[str, float]] | None = None
    comparison: dict[str, Any] | None = None
    if champion_onnx is not None:
        try:
            champion = OnnxModel(champion_onnx, contract)
        except ModelContractError as exc:
            champion_error = str(exc)
        else:
            champion_outputs = champion.predict(records)
            champion_metrics = compute_metrics(contract.task, targets, champion_outputs)
            champion_samples = bootstrap_samples(
                PredictionArrays.from_outputs(contract.task, targets, champion_outputs), resamples=resamples, seed=seed
            )
            champion_intervals = intervals_of(champion_samples, confidence)
            difference = percentile_interval(
                candidate_samples[primary.name] - champion_samples[primary.name], confidence
            )
            comparison = {
                "metric": primary.name,
                "higher_is_better": primary.higher_is_better,
                "candidate": candidate_score,
                "champion": champion_metrics[primary.name],
                "difference": candidate_score - champion_metrics[primary.name],
                "interval": difference,
            }

    extras: dict[str, Any] = {
        "metric_intervals": intervals_of(candidate_samples, confidence),
        "champion_metric_intervals": champion_intervals,
        "comparison": comparison,
        "feature_importance": permutation_importance(
            candidate_model, records, targets, repeats=importance_repeats, seed=seed
        ),
        "fairness": fairness_report(contract, records, targets, candidate_outputs),
        "method": {
            "bootstrap_resamples": resamples,
            "confidence": confidence,
            "importance_repeats": importance_repeats,
            "seed": seed,
        },
    }

    def verdict(promote: bool, reason: str) -> Evaluation:
        return Evaluation(
            parity=parity,
            candidate_metrics=candidate_metrics,
            champion_metrics=champion_metrics,
            primary_metric=primary.name,
            higher_is_better=primary.higher_is_better,
            promote=promote,
            reason=reason,
            holdout_rows=rows,
            champion_error=champion_error,
            **extras,
        )

    if not parity.ok:
        return verdict(False, f"not promoted: the ONNX export does not reproduce scikit-learn ({parity.message})")
    short = floors_missed(contract, candidate_metrics)
    if short:
        return verdict(False, f"not promoted: below the contract's floors ({'; '.join(short)}) on {rows} holdout rows")
    if champion_onnx is None:
        return verdict(True, f"no champion yet; candidate {primary.name} {candidate_score:.3f} on {rows} holdout rows")
    if champion_metrics is None:
        return verdict(
            True,
            f"champion no longer fits the contract ({champion_error}); "
            f"candidate {primary.name} {candidate_score:.3f} on {rows} holdout rows",
        )

    champion_score = champion_metrics[primary.name]
    if math.isnan(candidate_score) or math.isnan(champion_score):
        return verdict(
            False, f"cannot compare: {primary.name} is NaN (candidate {candidate_score}, champion {champion_score})"
        )
    better = candidate_score > champion_score if primary.higher_is_better else candidate_score < champion_score
    cand, champ = _pair(candidate_score, champion_score)
    if better:
        sign = ">" if primary.higher_is_better else "<"
        return verdict(True, f"candidate {primary.name} {cand} {sign} champion {champ} on {rows} holdout rows")
    return verdict(
        False,
        f"candidate {primary.name} {cand} does not beat champion {champ} on {rows} holdout rows "
        f"({'higher' if primary.higher_is_better else 'lower'} is better)",
    )


def floors_missed(contract: DatasetContract, metrics: Mapping[str, float]) -> list[str]:
    """Each of the contract's `governance.min_metrics` the holdout metrics miss, in words (a metric the holdout
    could not compute, such as ROC AUC on one class, misses its floor too)."""
    missed = []
    for metric, floor in sorted(contract.governance.min_metrics.items()):
        value = metrics.get(str(metric))
        if value is None or math.isnan(value):
            missed.append(f"{metric} could not be computed on the holdout (floor {floor:g})")
        elif metric.higher_is_better and value < floor:
            missed.append(f"{metric} {value:.3f} < floor {floor:g}")
        elif not metric.higher_is_better and value > floor:
            missed.append(f"{metric} {value:.3f} > ceiling {floor:g}")
    return missed


# -- what the model card reports beyond the point metrics ------------------------------------------------------------
# Computed once, in the evaluation step, and stored with the model version: a card only renders them.


@dataclass(frozen=True)
class PredictionArrays:
    """One model's predictions on the holdout as numpy arrays, beside the truth: what the bootstrap resamples.

    Classification: `truth` and `labels` are object arrays of strings, `scores` the probability matrix with columns
    in `classes` order. Regression: `truth` and `values` float64.
    """

    task: Task
    truth: np.ndarray
    labels: np.ndarray | None = None
    scores: np.ndarray | None = None
    classes: tuple[str, ...] = ()
    values: np.ndarray | None = None

    @classmethod
    def from_outputs(
        cls, task: Task | str, targets: Sequence[Any], outputs: Sequence[Mapping[str, Any]]
    ) -> PredictionArrays:
        """From serving-shaped outputs, as `compute_metrics` takes them."""
        if Task(task) is Task.REGRESSION:
            return cls(
                Task.REGRESSION,
                np.asarray([float(t) for t in targets], dtype=np.float64),
                values=np.asarray([float(o["value"]) for o in outputs], dtype=np.float64),
            )
        classes = tuple(sorted(outputs[0]["probabilities"])) if outputs else ()
        return cls(
            Task.CLASSIFICATION,
            np.asarray([str(t) for t in targets], dtype=object),
            labels=np.asarray([str(o["label"]) for o in outputs], dtype=object),
            scores=np.asarray(
                [[float(o["probabilities"].get(c, 0.0)) for c in classes] for o in outputs], dtype=np.float64
            ).reshape(len(outputs), len(classes)),
            classes=classes,
        )


def _weighted_auc(positive: np.ndarray, scores: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """`_binary_auc` of every resample in `idx` (resamples x rows) at once; NaN where a resample has one class.

    Each resample is a count per distinct score of positives and negatives (one bincount for the whole block); a
    positive beats every negative at a lower score and ties half of those at its own.
    """
    _distinct, inverse = np.unique(scores, return_inverse=True)
    width = int(inverse.max()) + 1
    blocks = idx.shape[0]
    cells = (inverse[idx] + np.arange(blocks)[:, None] * width).ravel()
    total = np.bincount(cells, minlength=blocks * width).reshape(blocks, width).astype(np.float64)
    pos = np.bincount(cells, weights=positive[idx].ravel().astype(np.float64), minlength=blocks * width).reshape(
        blocks, width
    )
    neg = total - pos
    below = np.cumsum(neg, axis=1) - neg
    wins = np.sum(pos * (below + 0.5 * neg), axis=1)
    pairs = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, wins / np.where(pairs > 0, pairs, 1.0), np.nan)


def _classification_samples(arrays: PredictionArrays, idx: np.ndarray) -> dict[str, np.ndarray]:
    assert arrays.labels is not None and arrays.scores is not None
    truth, predicted = arrays.truth, arrays.labels
    samples = {"accuracy": (truth == predicted)[idx].mean(axis=1)}
    f1_sum = np.zeros(idx.shape[0])
    present = np.zeros(idx.shape[0])
    for label in sorted(set(truth.tolist()) | set(predicted.tolist())):
        is_true, is_predicted = truth == label, predicted == label
        tp = (is_true & is_predicted)[idx].sum(axis=1)
        fp = (~is_true & is_predicted)[idx].sum(axis=1)
        fn = (is_true & ~is_predicted)[idx].sum(axis=1)
        denominator = 2 * tp + fp + fn
        # sklearn averages over the labels present in the resample's truth or predictions only.
        f1_sum += np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)
        present += denominator > 0
    samples["f1_macro"] = f1_sum / np.maximum(present, 1)
    eps = float(np.finfo(np.float64).eps)
    column = {c: i for i, c in enumerate(arrays.classes)}
    p_true = np.asarray(
        [arrays.scores[row, column[t]] if t in column else 0.0 for row, t in enumerate(truth.tolist())],
        dtype=np.float64,
    )
    samples["log_loss"] = (-np.log(np.clip(p_true, eps, 1 - eps)))[idx].mean(axis=1)
    if len(arrays.classes) == 2:
        samples["roc_auc"] = _weighted_auc(truth == arrays.classes[1], arrays.scores[:, 1], idx)
    elif len(arrays.classes) > 2:
        per_class = np.stack(
            [_weighted_auc(truth == c, arrays.scores[:, i], idx) for i, c in enumerate(arrays.classes)]
        )
        with warnings.catch_warnings():  # a resample where no class has both outcomes: NaN, left out later
            warnings.simplefilter("ignore", RuntimeWarning)
            samples["roc_auc"] = np.nanmean(per_class, axis=0)
    return samples


def _regression_samples(arrays: PredictionArrays, idx: np.ndarray) -> dict[str, np.ndarray]:
    assert arrays.values is not None
    residual = arrays.truth - arrays.values
    squared = (residual**2)[idx]
    y = arrays.truth[idx]
    ss_res = squared.sum(axis=1)
    ss_tot = ((y - y.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    r2 = np.where(ss_tot > 0, 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, 1.0), np.where(ss_res == 0, 1.0, 0.0))
    return {"rmse": np.sqrt(squared.mean(axis=1)), "mae": np.abs(residual)[idx].mean(axis=1), "r2": r2}


def bootstrap_samples(arrays: PredictionArrays, *, resamples: int, seed: int) -> dict[str, np.ndarray]:
    """Every metric of `compute_metrics` on `resamples` resamples (rows drawn with replacement) of the holdout.

    Vectorised over blocks of resamples, each a (resamples x rows) index matrix of bounded size. The same `seed` and
    row count draw the same resamples, so two models' samples pair up row for row (see `compare_bootstrap`).
    """
    rows = int(arrays.truth.shape[0])
    if rows == 0:
        raise ValueError("cannot bootstrap an empty holdout")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    rng = np.random.default_rng(seed)
    block = max(1, BOOTSTRAP_BLOCK_CELLS // rows)
    parts: dict[str, list[np.ndarray]] = {}
    samples_of = _classification_samples if arrays.task is Task.CLASSIFICATION else _regression_samples
    for start in range(0, resamples, block):
        idx = rng.integers(0, rows, size=(min(block, resamples - start), rows))
        for name, values in samples_of(arrays, idx).items():
            parts.setdefault(name, []).append(values)
    return {name: np.concatenate(values) for name, values in parts.items()}


def percentile_interval(samples: np.ndarray, confidence: float = BOOTSTRAP_CONFIDENCE) -> dict[str, float] | None:
    """The percentile interval of bootstrap samples (NaN samples, resamples where the metric is undefined, left
    out); None when no resample defines it."""
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return None
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return {"low": float(low), "high": float(high)}


def bootstrap_intervals(
    arrays: PredictionArrays,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    confidence: float = BOOTSTRAP_CONFIDENCE,
    seed: int = EVALUATION_SEED,
) -> dict[str, dict[str, float]]:
    """Percentile bootstrap confidence intervals, `{metric: {"low", "high"}}`, of every holdout metric."""
    return intervals_of(bootstrap_samples(arrays, resamples=resamples, seed=seed), confidence)


def intervals_of(
    samples: Mapping[str, np.ndarray], confidence: float = BOOTSTRAP_CONFIDENCE
) -> dict[str, dict[str, float]]:
    """The percentile interval of each metric's bootstrap samples (metrics no resample defines are left out)."""
    intervals = {}
    for name, values in samples.items():
        interval = percentile_interval(values, confidence)
        if interval is not None:
            intervals[name] = interval
    return intervals


def compare_bootstrap(
    candidate: PredictionArrays,
    champion: PredictionArrays,
    metric: str,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    confidence: float = BOOTSTRAP_CONFIDENCE,
    seed: int = EVALUATION_SEED,
) -> dict[str, float] | None:
    """The paired bootstrap interval of candidate minus champion on `metric`: both scored on the same resamples."""
    difference = (
        bootstrap_samples(candidate, resamples=resamples, seed=seed)[metric]
        - bootstrap_samples(champion, resamples=resamples, seed=seed)[metric]
    )
    return percentile_interval(difference, confidence)


def primary_score(task: Task, truth: np.ndarray, results: Sequence[np.ndarray]) -> float:
    """The task's primary metric (accuracy, RMSE) from one raw session run (`OnnxModel.run`)."""
    if task is Task.CLASSIFICATION:
        labels = np.asarray(results[0]).reshape(-1).astype(str)
        return float(np.mean(labels == truth.astype(str)))
    values = np.asarray(results[0], dtype=np.float64).reshape(-1)
    return float(np.sqrt(np.mean((truth.astype(np.float64) - values) ** 2)))


def permutation_importance(
    model: OnnxModel,
    records: Sequence[Mapping[str, Any]],
    targets: Sequence[Any],
    *,
    repeats: int = IMPORTANCE_REPEATS,
    seed: int = EVALUATION_SEED,
) -> list[dict[str, Any]]:
    """Per feature, how much the primary metric worsens when that feature's column is shuffled across the holdout.

    One session run on the whole holdout per feature per repeat. `drop` is positive when shuffling hurts (accuracy
    falls, RMSE rises); `mean` and `std` over the repeats. Sorted by mean drop, largest first.
    """
    if repeats < 1:
        return []
    task = model.contract.task
    primary = PRIMARY_METRIC[task]
    truth = np.asarray([str(t) for t in targets] if task is Task.CLASSIFICATION else targets, dtype=object)
    feeds = model.feeds(records)
    baseline = primary_score(task, truth, model.run(feeds))
    rng = np.random.default_rng(seed)
    rows = len(records)
    importances: list[tuple[float, float, str]] = []
    for feature in model.contract.features:
        drops = []
        for _ in range(repeats):
            shuffled = dict(feeds)
            shuffled[feature.name] = feeds[feature.name][rng.permutation(rows)]
            score = primary_score(task, truth, model.run(shuffled))
            drops.append(baseline - score if primary.higher_is_better else score - baseline)
        importances.append((float(np.mean(drops)), float(np.std(drops)), feature.name))
    importances.sort(key=lambda entry: (-entry[0], entry[2]))
    return [{"feature": name, "mean": mean, "std": std, "repeats": repeats} for mean, std, name in importances]


def _rate(hits: np.ndarray, among: np.ndarray) -> float | None:
    count = int(among.sum())
    return float(hits[among].mean()) if count else None


def _spread(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) - min(known) if known else None


def group_fairness(
    truth: Sequence[Any], predicted: Sequence[Any], groups: Sequence[Any], positive: str
) -> dict[str, Any]:
    """Demographic parity and equalized-odds differences between the groups of one sensitive feature, for the
    class `positive` against the rest, as fairlearn's `demographic_parity_difference` and
    `equalized_odds_difference` (between groups, worst case) compute them.

    Demographic parity difference: the largest minus the smallest selection rate (share predicted `positive`) over
    the groups. Equalized-odds difference: the larger of the spreads of true-positive rates and false-positive rates
    over the groups; a group with no actual positives (negatives) has no TPR (FPR) and is left out of that spread.
    """
    y = np.asarray([str(t) == positive for t in truth])
    p = np.asarray([str(v) == positive for v in predicted])
    g = np.asarray(["" if v is None else str(v) for v in groups], dtype=object)
    per_group = []
    for name in sorted(set(g.tolist())):
        member = g == name
        per_group.append(
            {
                "group": name,
                "rows": int(member.sum()),
                "selection_rate": float(p[member].mean()),
                "true_positive_rate": _rate(p, member & y),
                "false_positive_rate": _rate(p, member & ~y),
                "accuracy": float((p == y)[member].mean()),
            }
        )
    tpr_spread = _spread([entry["true_positive_rate"] for entry in per_group])
    fpr_spread = _spread([entry["false_positive_rate"] for entry in per_group])
    spreads = [s for s in (tpr_spread, fpr_spread) if s is not None]
    return {
        "positive": positive,
        "demographic_parity_difference": _spread([entry["selection_rate"] for entry in per_group]),
        "equalized_odds_difference": max(spreads) if spreads else None,
        "groups": per_group,
    }


def fairness_report(
    contract: DatasetContract,
    records: Sequence[Mapping[str, Any]],
    targets: Sequence[Any],
    outputs: Sequence[Mapping[str, Any]],
) -> dict[str, Any] | None:
    """Fairness of a classifier across the contract's `governance.sensitive_features`, or None when it declares none
    (or the task is regression).

    Binary: the second class in sorted order is the positive one (as for ROC AUC). More classes: one-vs-rest per
    class, and each feature's headline differences are the worst (largest) over the classes.
    """
    sensitive = contract.governance.sensitive_features
    if not sensitive or contract.task is not Task.CLASSIFICATION or not outputs:
        return None
    classes = sorted(outputs[0]["probabilities"])
    positives = classes[1:] if len(classes) == 2 else classes
    predicted = [o["label"] for o in outputs]
    features: dict[str, Any] = {}
    for name in sensitive:
        groups = [r.get(name) for r in records]
        per_class = [group_fairness(targets, predicted, groups, positive) for positive in positives]
        features[name] = {
            "demographic_parity_difference": _worst([c["demographic_parity_difference"] for c in per_class]),
            "equalized_odds_difference": _worst([c["equalized_odds_difference"] for c in per_class]),
            "per_class": per_class,
        }
    convention = (
        f"positive class '{positives[0]}'"
        if len(positives) == 1
        else "one-vs-rest per class; each difference is the worst over the classes"
    )
    return {"convention": convention, "features": features}


def _worst(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None
