"""Evaluation: ONNX parity with scikit-learn, and candidate against champion on the same holdout.

numpy and onnxruntime only (through `loopml_core.serving`); the metrics are computed here by hand so that the
inference layer needs no scikit-learn. They match `sklearn.metrics` (tested).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numpy as np

from loopml_core.contract import DatasetContract, Task
from loopml_core.serving import ModelContractError, OnnxModel

DEFAULT_PROBABILITY_TOLERANCE = 0.06
DEFAULT_VALUE_TOLERANCE = 1e-3
MIN_LABEL_AGREEMENT = 0.995


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
) -> Evaluation:
    """Check the candidate's ONNX parity with scikit-learn, then score candidate and champion on the same holdout.

    The candidate is promoted when parity holds and either there is no champion, the champion no longer fits the
    contract, or the candidate is strictly better on the task's primary metric.
    """
    records, targets = read_holdout(contract, holdout_csv)
    rows = len(records)
    primary = PRIMARY_METRIC[contract.task]

    candidate_outputs = OnnxModel(candidate_onnx, contract).predict(records)
    parity = check_parity(contract.task, candidate_outputs, reference_predictions)
    candidate_metrics = compute_metrics(contract.task, targets, candidate_outputs)
    candidate_score = candidate_metrics[primary.name]

    champion_metrics: dict[str, float] | None = None
    champion_error: str | None = None
    if champion_onnx is not None:
        try:
            champion = OnnxModel(champion_onnx, contract)
        except ModelContractError as exc:
            champion_error = str(exc)
        else:
            champion_metrics = compute_metrics(contract.task, targets, champion.predict(records))

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
        )

    if not parity.ok:
        return verdict(False, f"not promoted: the ONNX export does not reproduce scikit-learn ({parity.message})")
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
