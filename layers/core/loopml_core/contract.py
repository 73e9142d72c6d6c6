"""The dataset contract: what a dataset must look like before LoopML will version it and train on it."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

NAME_PATTERN = r"^[a-z][a-z0-9-]{0,62}$"


class Task(StrEnum):
    CLASSIFICATION = "classification"
    REGRESSION = "regression"


class FeatureType(StrEnum):
    INT = "int"
    FLOAT = "float"
    CATEGORY = "category"


class Feature(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(min_length=1, max_length=128)]
    type: FeatureType
    min: float | None = None
    max: float | None = None
    values: tuple[str, ...] | None = None
    nullable: bool = False

    @model_validator(mode="after")
    def _check_shape(self) -> Feature:
        if self.type is FeatureType.CATEGORY:
            if not self.values:
                raise ValueError(f"category feature '{self.name}' needs a non-empty 'values' list")
            if self.min is not None or self.max is not None:
                raise ValueError(f"category feature '{self.name}' takes 'values', not 'min'/'max'")
        elif self.values is not None:
            raise ValueError(f"numeric feature '{self.name}' takes 'min'/'max', not 'values'")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"feature '{self.name}' has min {self.min} > max {self.max}")
        return self

    @property
    def is_numeric(self) -> bool:
        return self.type is not FeatureType.CATEGORY


class Quality(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    min_rows: Annotated[int, Field(ge=1)] = 100
    max_null_fraction: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    # Population stability index of a new version against the previous one above which the upload is rejected.
    # None disables the distribution check (the drift checker still watches live traffic).
    max_psi: Annotated[float, Field(gt=0.0)] | None = None


class Retrain(StrEnum):
    UPLOAD = "upload"  # every valid upload starts the training pipeline
    DRIFT = "drift"  # uploads are versioned; training restarts when the drift check fires (first upload trains)


# Retention classes of captured traffic. Each is a lifecycle rule on its own S3 prefix, declared with the stack, so a
# contract picks one rather than any number of days (a rule per model would have to be rewritten at run time).
RETENTION_DAYS = (7, 14, 30, 90, 365)


class DriftThresholds(BaseModel):
    """When a feature (or the prediction) counts as drifted; either test suffices."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Population stability index over the baseline's ten quantile bins: 0.1 is a moderate shift, 0.2 a major one.
    psi: Annotated[float, Field(gt=0.0)] = 0.2
    # KS (numeric) or chi-squared (category) p-value under which a difference is significant, before the Bonferroni
    # correction over every feature and the prediction checked together.
    p_value: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.01
    # With hundreds of thousands of rows any difference is significant; a significant one is drift only when its
    # effect reaches this: the KS statistic (largest gap between the two CDFs) or Cramer's V (category).
    min_effect: Annotated[float, Field(ge=0.0, le=1.0)] = 0.1


class PerformanceMetric(StrEnum):
    ACCURACY = "accuracy"
    F1_MACRO = "f1_macro"
    ROC_AUC = "roc_auc"
    RMSE = "rmse"
    MAE = "mae"

    @property
    def higher_is_better(self) -> bool:
        return self not in (PerformanceMetric.RMSE, PerformanceMetric.MAE)

    @property
    def task(self) -> Task:
        return Task.CLASSIFICATION if self.higher_is_better else Task.REGRESSION


class PerformanceMonitoring(BaseModel):
    """Live quality, once labels for served predictions arrive."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: PerformanceMetric | None = None  # default: f1_macro for classification, rmse for regression
    # Relative worsening of the live metric against the holdout metric the version was promoted on that fires the
    # alert and the retraining path: 0.1 is 10 % (an F1 of 0.80 falling under 0.72, an RMSE of 5 rising over 5.5).
    tolerance: Annotated[float, Field(gt=0.0)] = 0.1
    min_labels: Annotated[int, Field(ge=1)] = 100  # labelled predictions a window needs before it is judged
    # How far back a label file's predictions are looked for among the captures (labels of older ones find none).
    lookback_days: Annotated[int, Field(ge=0, le=90)] = 7


class Monitoring(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sample_rate: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0  # share of requests captured
    retention_days: int = 30  # how long captured traffic is kept: one of RETENTION_DAYS
    min_rows: Annotated[int, Field(ge=1)] = 500  # captured rows a check needs before it judges drift
    drift: DriftThresholds = DriftThresholds()
    performance: PerformanceMonitoring = PerformanceMonitoring()

    @model_validator(mode="after")
    def _check_retention(self) -> Monitoring:
        if self.retention_days not in RETENTION_DAYS:
            choices = ", ".join(str(d) for d in RETENTION_DAYS)
            raise ValueError(f"monitoring.retention_days must be one of {choices}, not {self.retention_days}")
        return self


class Retraining(BaseModel):
    """Guards on drift- and performance-triggered retraining (an upload, or `loopml pipeline start`, is not gated)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cooldown_hours: Annotated[float, Field(ge=0.0)] = 6.0  # between two monitoring-triggered runs of the model
    min_captured_rows: Annotated[int, Field(ge=0)] = 1000  # rows the triggering check saw
    # Accepted rows in dataset versions newer than the champion's: no retrain on the data the champion learnt from.
    min_new_rows: Annotated[int, Field(ge=0)] = 1
    daily_budget: Annotated[int, Field(ge=0)] = 3  # monitoring-triggered runs per model per UTC day


class OutOfRange(StrEnum):
    REJECT = "reject"  # a request with a value outside a feature's min/max gets a 422 naming it
    ACCEPT = "accept"  # served anyway (the model extrapolates)


class Serving(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    out_of_range: OutOfRange = OutOfRange.REJECT


class Approval(StrEnum):
    AUTO = "auto"  # a candidate that reaches the floors and beats the champion serves at once
    MANUAL = "manual"  # it waits as PENDING_APPROVAL until a person approves it (or rejects it, or time runs out)


class Governance(BaseModel):
    """Who may trust the model and how it is judged beyond its holdout metric.

    `sensitive_features` names category features whose groups the evaluation step compares (demographic parity and
    equalized-odds differences, shown on the model card). `min_metrics` are floors every candidate's holdout metrics
    must reach before it may serve, the first model included (for an error metric, rmse or mae, the value is a
    ceiling). With `approval: manual` a candidate that would serve waits for a person's decision (`loopml models
    approve` / `reject`) for `approval_timeout_hours` (a week by default); undecided by then, it is rejected.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    sensitive_features: tuple[str, ...] = ()
    min_metrics: dict[PerformanceMetric, float] = Field(default_factory=dict)
    approval: Approval = Approval.AUTO
    # Step Functions waits for a task token at most a year.
    approval_timeout_hours: Annotated[float, Field(gt=0, le=8760)] = 168.0


class DatasetContract(BaseModel):
    """A dataset contract. `name` is also the name of the registered model trained on it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    task: Task
    target: Annotated[str, Field(min_length=1)]
    features: Annotated[tuple[Feature, ...], Field(min_length=1)]
    target_values: tuple[str, ...] | None = None
    quality: Quality = Quality()
    retrain_on: Retrain = Retrain.UPLOAD
    monitoring: Monitoring = Monitoring()
    retraining: Retraining = Retraining()
    serving: Serving = Serving()
    # Algorithm for the training step; both export to ONNX with the preprocessing in the graph.
    algorithm: Literal["logistic_regression", "random_forest", "gradient_boosting", "linear_regression"] | None = None
    # What the model is for, in words, for its model card; defaults describe the task when absent.
    description: Annotated[str, Field(max_length=2000)] | None = None
    intended_use: Annotated[str, Field(max_length=2000)] | None = None
    governance: Governance = Governance()

    @model_validator(mode="after")
    def _check_names(self) -> DatasetContract:
        names = [f.name for f in self.features]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate feature names: {', '.join(duplicates)}")
        if self.target in names:
            raise ValueError(f"target '{self.target}' must not also be a feature")
        if self.task is Task.REGRESSION and self.target_values is not None:
            raise ValueError("'target_values' applies to classification only")
        for name in self.governance.sensitive_features:
            if name not in names:
                raise ValueError(f"governance.sensitive_features names '{name}', which is not a feature")
            if self.feature(name).is_numeric:
                raise ValueError(
                    f"governance.sensitive_features: '{name}' must be a category feature (its values are the groups)"
                )
        for floor in self.governance.min_metrics:
            if floor.task is not self.task:
                raise ValueError(f"governance.min_metrics: '{floor}' does not apply to {self.task}")
        metric = self.monitoring.performance.metric
        if metric is not None and metric.task is not self.task:
            raise ValueError(f"monitoring.performance.metric '{metric}' does not apply to {self.task}")
        return self

    @property
    def performance_metric(self) -> PerformanceMetric:
        metric = self.monitoring.performance.metric
        if metric is not None:
            return metric
        return PerformanceMetric.F1_MACRO if self.task is Task.CLASSIFICATION else PerformanceMetric.RMSE

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    def feature(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)

    def fingerprint(self) -> str:
        """A stable hash of the contract's content, so re-declaring an unchanged contract is not a new version.

        Optional sections left at their defaults are not hashed, so a contract declared before they existed keeps
        its fingerprint (and its models their match with it)."""
        import hashlib

        unset = {name for name in OPTIONAL_SECTIONS if getattr(self, name) == type(self).model_fields[name].default}
        return hashlib.sha256(self.model_dump_json(exclude=unset).encode()).hexdigest()[:16]

    @property
    def purpose(self) -> str:
        """What the model is for: the contract's `intended_use`, else a sentence made from its task and target."""
        if self.intended_use:
            return self.intended_use
        if self.task is Task.CLASSIFICATION:
            labels = f" (one of {', '.join(self.target_values)})" if self.target_values else ""
            return f"Predict '{self.target}'{labels} for one record of the {len(self.features)} features below."
        return f"Estimate the number '{self.target}' for one record of the {len(self.features)} features below."


# Sections added after contracts were first stored: hashed only when set (see `DatasetContract.fingerprint`).
OPTIONAL_SECTIONS = ("description", "intended_use", "governance")


def load_contract(text: str) -> DatasetContract:
    """Parse a contract from YAML or JSON text (JSON is YAML)."""
    import yaml  # only here: the predict function reads stored contracts as JSON, and a cold start saves 8 ms

    data: Any = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError("a contract must be a mapping with name, task, target and features")
    return DatasetContract.model_validate(data)


def dump_contract(contract: DatasetContract) -> str:
    return json.dumps(contract.model_dump(mode="json"), indent=2, sort_keys=True)
