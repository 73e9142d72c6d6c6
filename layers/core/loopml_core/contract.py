"""The dataset contract: what a dataset must look like before LoopML will version it and train on it."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any, Literal

import yaml
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
    # Algorithm for the training step; both export to ONNX with the preprocessing in the graph.
    algorithm: Literal["logistic_regression", "random_forest", "gradient_boosting", "linear_regression"] | None = None

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
        return self

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    def feature(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)

    def fingerprint(self) -> str:
        """A stable hash of the contract's content, so re-declaring an unchanged contract is not a new version."""
        import hashlib

        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]


def load_contract(text: str) -> DatasetContract:
    """Parse a contract from YAML or JSON text (JSON is YAML)."""
    data: Any = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError("a contract must be a mapping with name, task, target and features")
    return DatasetContract.model_validate(data)


def dump_contract(contract: DatasetContract) -> str:
    return json.dumps(contract.model_dump(mode="json"), indent=2, sort_keys=True)
