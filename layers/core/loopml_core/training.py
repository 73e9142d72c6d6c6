"""Training: fit a scikit-learn pipeline on a contract-typed dataset and export it, preprocessing included, to ONNX.

Runs in the training Lambda only (scikit-learn, pandas, skl2onnx). The exported graph follows the input convention
documented in `loopml_core.serving`; the holdout, scikit-learn's predictions on it and a drift baseline travel with
the model so that the evaluation step can check parity and score candidate and champion on the same rows.
"""

from __future__ import annotations

import csv
import io
import json
import math
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import pandas as pd
from numpy.typing import NDArray
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType, StringTensorType
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from loopml_core import drift
from loopml_core.contract import DatasetContract, Task
from loopml_core.errors import DatasetTooLargeError
from loopml_core.evaluation import compute_metrics
from loopml_core.models import DatasetVersion
from loopml_core.serving import (
    META_ALGORITHM,
    META_CLASSES,
    META_CONTRACT,
    META_FEATURES,
    META_TASK,
    classification_outputs,
    regression_outputs,
)

DEFAULT_ALGORITHM = "gradient_boosting"
ALGORITHMS: dict[Task, tuple[str, ...]] = {
    Task.CLASSIFICATION: ("gradient_boosting", "random_forest", "logistic_regression"),
    Task.REGRESSION: ("gradient_boosting", "random_forest", "linear_regression"),
}
MIN_TRAIN_ROWS = 20
MIN_HOLDOUT_ROWS = 5
MODEL_STEP = "model"


class TrainingError(ValueError):
    """The dataset cannot be trained on (too few rows, a single class, unusable values)."""


# -- memory ----------------------------------------------------------------------------------------------------------
# What training a dataset version needs, estimated before it is fetched, so that a version too large for the function
# fails with a reason instead of an out-of-memory kill. The model: BASE_MB + ALGORITHM_MB + rows x (
# BYTES_PER_COLUMN x (features + target) + BYTES_PER_ENCODED_COLUMN x (numeric features + category values)).
# The first term per row pays for the fetched bytes, pandas' text columns (Python str objects: the training layer has
# no pyarrow) and the typed frame and its copies; the second for the dense one-hot matrix scikit-learn fits and
# predicts on, so a contract with many category values costs more per row than its column count says.
#
# Measured: peak RSS (getrusage ru_maxrss) of a fresh Python 3.11 process that blocks `import pyarrow`, imports boto3,
# Powertools and this module (209 MB), then reads a synthetic 20-feature dataset's bytes and runs `read_dataset` and
# `train` (gradient boosting, holdout 0.2). CSV peaks highest; gzip CSV the same; Parquet 5 % lower. Peak, bytes a row:
#   12 numeric + 8 categories of 5 values:  385 / 547 / 1,422 MB at 100k / 200k / 800k rows   ->  1,529 a row
#   12 numeric + 8 categories of 50 values: 892 / 1,516 MB at 100k / 200k (logistic regression: 1,402)  ->  6,540
#   20 numeric:                             358 / 500 / 1,561 MB at 100k / 200k / 1M rows     ->  1,391
# Least squares on the first two gives 38 bytes a column and 14 an encoded column, which underestimates the third
# (numbers are long as CSV text, and pandas holds every cell as a Python str while reading); 64 and 16 give 2,176,
# 7,936 and 1,664 bytes a row, 20-42 % above the measured slopes, and the intercepts (235-268 MB) plus the Lambda
# runtime round to a 300 MB base. The estimates for the largest runs: 1,961 MB (800k rows, measured 1,422), 1,814 MB
# (200k of 50-value categories, 1,516), 1,887 MB (1M numeric, 1,561). At the default 2048 MB: 1.1M rows of 20 numeric
# features, 840k of the first kind.
# A random forest adds its trees and their ONNX conversion (skl2onnx holds every node in Python lists): 270-420 MB
# more than gradient boosting at 50k-200k rows, growing with the node count, which depth 12 bounds at 1.43 x what
# 200k rows reached (572k of 819k nodes); so 700 MB.
# tests/integration/test_training_memory_peak.py checks the estimate against a measured 20k-80k-row peak on every run
# and repeats the 200k-row measurement with LOOPML_MEASURE_TRAINING_MEMORY=1.
BASE_MB = 300
BYTES_PER_COLUMN = 64
BYTES_PER_ENCODED_COLUMN = 16
ALGORITHM_MB = {"random_forest": 700}
LAMBDA_MAX_MEMORY_MB = 10240
TRAIN_FUNCTION = "train_model"  # its key in infra/declaration.py, where its memory_mb is set


def _bytes_per_row(contract: DatasetContract) -> int:
    columns = len(contract.features) + 1
    encoded = sum(1 if f.is_numeric else len(f.values or ()) for f in contract.features)
    return BYTES_PER_COLUMN * columns + BYTES_PER_ENCODED_COLUMN * encoded


def estimate_memory_mb(contract: DatasetContract, rows: int) -> int:
    """The memory, in MB, that reading and training `rows` rows of a dataset under `contract` is estimated to need."""
    fixed = BASE_MB + ALGORITHM_MB.get(_algorithm(contract), 0)
    return fixed + math.ceil(rows * _bytes_per_row(contract) / 2**20)


def max_rows(contract: DatasetContract, memory_mb: int) -> int:
    """The most rows of a dataset under `contract` that train within `memory_mb` by `estimate_memory_mb`."""
    spare = memory_mb - BASE_MB - ALGORITHM_MB.get(_algorithm(contract), 0)
    return max(0, spare * 2**20 // _bytes_per_row(contract))


def check_memory(contract: DatasetContract, version: DatasetVersion, memory_mb: int | None) -> None:
    """Raise `DatasetTooLargeError` when `version` is estimated not to train within `memory_mb` (None: no limit)."""
    if memory_mb is None:
        return
    needed = estimate_memory_mb(contract, version.rows)
    if needed <= memory_mb:
        return
    what = (
        f"dataset '{version.dataset}' v{version.version} is too large to train: its {version.rows:,} rows x "
        f"{len(contract.features) + 1} columns ({version.format}, {_algorithm(contract)}) need an estimated "
        f"{needed:,} MB of memory, and {TRAIN_FUNCTION} has {memory_mb:,} MB, enough for about "
        f"{max_rows(contract, memory_mb):,} rows of it."
    )
    if needed <= LAMBDA_MAX_MEMORY_MB:
        todo = (
            f"To train it, raise memory_mb of {TRAIN_FUNCTION} in infra/declaration.py (Lambda allows up to "
            f"{LAMBDA_MAX_MEMORY_MB} MB; {needed:,} MB would do) and redeploy, or upload a sample."
        )
    else:
        todo = (
            f"To train it, upload a sample: even if you raise memory_mb of {TRAIN_FUNCTION} in infra/declaration.py to "
            f"the most Lambda allows ({LAMBDA_MAX_MEMORY_MB} MB) and redeploy, only about "
            f"{max_rows(contract, LAMBDA_MAX_MEMORY_MB):,} rows fit."
        )
    raise DatasetTooLargeError(f"{what} {todo}")


@dataclass(frozen=True)
class TrainingResult:
    """A trained candidate: the ONNX graph plus what evaluation (holdout, reference outputs) and drift need."""

    onnx_model: bytes
    holdout_csv: bytes
    reference_predictions: list[dict[str, Any]]
    metrics: dict[str, float]
    params: dict[str, Any]
    baseline: dict[str, Any]
    train_rows: int
    holdout_rows: int


DATASET_FORMATS = ("csv", "csv.gz", "parquet")  # `DatasetVersion.format`: how a stored dataset version is encoded
PARQUET_MAGIC = b"PAR1"


def read_dataset(contract: DatasetContract, data: bytes, file_format: str = "csv") -> pd.DataFrame:
    """Read a stored dataset version into a frame with the contract's columns in contract order (features, target).

    `file_format` is the version's `DatasetVersion.format`: "csv", "csv.gz" (gzip-compressed CSV) or "parquet".
    Numeric features are float64 with NaN for nulls, categories are Python strings with None for nulls; the target
    is a string for classification and a float for regression. In a CSV only empty cells are nulls, so a category
    such as "NA" survives. A Parquet file gives the frame the same data gives as CSV: numbers of any width become
    float64, other values their CSV text (an int-typed label 1 is "1"), and nulls and empty strings are nulls.
    """
    if file_format == "parquet":
        raw = _read_parquet(contract, data)
    elif file_format in ("csv", "csv.gz"):
        raw = _read_csv(data, compression="gzip" if file_format == "csv.gz" else None)
    else:
        raise TrainingError(f"unsupported dataset format '{file_format}': expected one of {', '.join(DATASET_FORMATS)}")
    missing = [c for c in [*contract.feature_names, contract.target] if c not in raw.columns]
    if missing:
        raise TrainingError(f"dataset lacks contract columns: {', '.join(missing)}")

    frame = pd.DataFrame(index=raw.index)
    for f in contract.features:
        frame[f.name] = _to_float(raw[f.name], f.name) if f.is_numeric else _to_strings(raw[f.name])
    if contract.task is Task.CLASSIFICATION:
        frame[contract.target] = _to_strings(raw[contract.target])
    else:
        frame[contract.target] = _to_float(raw[contract.target], contract.target)
    return frame


def _read_csv(data: bytes, compression: str | None) -> pd.DataFrame:
    """Every cell as text, only empty cells null: the columns are typed per contract afterwards."""
    try:
        return pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, na_values=[""], compression=compression)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise TrainingError(f"cannot parse the dataset CSV: {exc}") from exc
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError; a truncated stream, EOFError
        raise TrainingError(f"cannot decompress the gzip-compressed dataset CSV: {exc}") from exc


def _read_parquet(contract: DatasetContract, data: bytes) -> pd.DataFrame:
    """The contract's columns of a Parquet file, with fastparquet: pyarrow does not fit in the training layer.

    fastparquet is called directly rather than through `pd.read_parquet(engine="fastparquet")`: pandas 3.1 deprecates
    that engine (removal in pandas 4), and its wrapper turns off fastparquet's nullable dtypes, which read an optional
    int column with nulls as float64, so that a null-bearing int label 1 would read as "1.0". With them it is Int64.
    Each column is converted where it is typed (`_to_float`, `_to_strings`), exactly as CSV text is.
    """
    import fastparquet

    # fastparquet decodes the footer without checking the framing, and its decoder can crash the process on bytes
    # that are not Parquet; the validated upload always is, but a mislabelled object must fail with a reason.
    footer = int.from_bytes(data[-8:-4], "little") if len(data) >= 12 else 0
    if data[:4] != PARQUET_MAGIC or data[-4:] != PARQUET_MAGIC or not 0 < footer <= len(data) - 12:
        raise TrainingError("cannot read the dataset Parquet file: it does not start and end as a Parquet file does")
    try:
        parquet = fastparquet.ParquetFile(io.BytesIO(data))
        wanted = [c for c in [*contract.feature_names, contract.target] if c in parquet.columns]
        raw = parquet.to_pandas(columns=wanted)
    except Exception as exc:  # fastparquet raises a variety of types (ValueError, TypeError, thrift errors)
        raise TrainingError(f"cannot read the dataset Parquet file: {exc}") from exc
    return raw.reset_index(drop=True)


def _to_float(column: pd.Series, name: str) -> pd.Series:
    """Numbers as float64 with NaN for nulls, from CSV text or from any numeric Parquet column."""
    dtype = column.dtype
    if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_object_dtype(dtype):  # Parquet text, dictionaries
        column = column.astype(object).where(column.notna() & (column.astype(object) != ""), None)
    elif pd.api.types.is_bool_dtype(dtype) or not (
        pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_string_dtype(dtype)
    ):  # booleans, timestamps and the like are no numbers in a CSV either ("True", "2024-01-01")
        raise TrainingError(f"column '{name}' has values that are not numbers: it is stored as {dtype}")
    elif _is_float32(dtype):
        # A float32 column is written to CSV in its shortest decimal form (0.1, not 0.10000000149011612): read so.
        text = column.to_numpy(dtype=np.float32, na_value=np.nan).astype(str)
        return pd.Series(text.astype(np.float64), index=column.index)
    elif pd.api.types.is_numeric_dtype(dtype):  # int8..int64, uint*, nullable Int64 and friends, float64
        return pd.Series(column.to_numpy(dtype=np.float64, na_value=np.nan), index=column.index)
    try:
        return pd.to_numeric(column, errors="raise").astype(np.float64)
    except (ValueError, TypeError) as exc:
        raise TrainingError(f"column '{name}' has values that are not numbers: {exc}") from exc


def _to_strings(column: pd.Series) -> pd.Series:
    """Python strings with None for nulls and empty strings: the text each value has in a CSV pandas writes."""
    if pd.api.types.is_float_dtype(column.dtype):  # Parquet only (CSV cells are text): str is the shortest repr
        width = np.float32 if _is_float32(column.dtype) else np.float64
        values = [None if np.isnan(v) else str(v) for v in column.to_numpy(dtype=width, na_value=np.nan)]
    else:
        values = [None if pd.isna(v) or v == "" else str(v) for v in column.tolist()]
    return pd.Series(values, index=column.index, dtype=object)


def _is_float32(dtype: Any) -> bool:
    return bool(dtype == np.float32 or dtype == pd.Float32Dtype())


def _features(contract: DatasetContract, frame: pd.DataFrame) -> pd.DataFrame:
    """The model's view of the features: what the ONNX graph will be fed at serving time."""
    out = pd.DataFrame(index=frame.index)
    for f in contract.features:
        column = frame[f.name]
        if f.is_numeric:
            values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
            if not f.nullable and np.isnan(values).any():
                raise TrainingError(f"feature '{f.name}' is not nullable but has empty or non-numeric values")
            # Fitted on the float64 values as given: rounding is monotone, so the graph's float32 thresholds and
            # inputs route raw client values exactly as scikit-learn does (rounding only the training data would not).
            out[f.name] = values
        else:
            out[f.name] = pd.Series(
                ["" if pd.isna(v) else str(v) for v in column.tolist()], index=frame.index, dtype=object
            )
    return out


def _target(contract: DatasetContract, frame: pd.DataFrame) -> NDArray[Any]:
    column = frame[contract.target]
    if column.isna().any():
        raise TrainingError(f"target '{contract.target}' has {int(column.isna().sum())} empty values")
    if contract.task is Task.CLASSIFICATION:
        return np.asarray([str(v) for v in column.tolist()], dtype=object)
    values: NDArray[np.float64] = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        raise TrainingError(f"regression target '{contract.target}' has non-numeric or infinite values")
    return values


def _algorithm(contract: DatasetContract) -> str:
    algorithm = contract.algorithm or DEFAULT_ALGORITHM
    if algorithm not in ALGORITHMS[contract.task]:
        choices = ", ".join(ALGORITHMS[contract.task])
        raise TrainingError(f"algorithm '{algorithm}' does not apply to {contract.task}; use one of {choices}")
    return algorithm


def _estimator(task: Task, algorithm: str, seed: int) -> Any:
    classification = task is Task.CLASSIFICATION
    if algorithm == "gradient_boosting":
        cls = HistGradientBoostingClassifier if classification else HistGradientBoostingRegressor
        return cls(max_iter=100, learning_rate=0.1, max_leaf_nodes=31, min_samples_leaf=20, random_state=seed)
    if algorithm == "random_forest":
        forest = RandomForestClassifier if classification else RandomForestRegressor
        # Bounded depth keeps the ONNX graph (every node of every tree) small enough for a Lambda cold start.
        return forest(n_estimators=100, max_depth=12, min_samples_leaf=2, random_state=seed, n_jobs=1)
    if algorithm == "logistic_regression":
        return LogisticRegression(C=1.0, max_iter=2000)
    return LinearRegression()


def build_pipeline(contract: DatasetContract, seed: int = 7) -> Pipeline:
    """The unfitted pipeline: per-feature preprocessing in a ColumnTransformer, then the contract's algorithm."""
    algorithm = _algorithm(contract)
    scale = algorithm in ("logistic_regression", "linear_regression")
    plain = [f.name for f in contract.features if f.is_numeric and not f.nullable]
    nullable = [f.name for f in contract.features if f.is_numeric and f.nullable]
    categories = [f for f in contract.features if not f.is_numeric]

    transformers: list[tuple[str, Any, list[str]]] = []
    if plain:
        transformers.append(("numeric", StandardScaler() if scale else "passthrough", plain))
    if nullable:
        steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy="median", keep_empty_features=True))]
        if scale:
            steps.append(("scale", StandardScaler()))
        transformers.append(("nullable", Pipeline(steps), nullable))
    if categories:
        encoder = OneHotEncoder(
            categories=[list(f.values or ()) for f in categories], handle_unknown="ignore", sparse_output=False
        )
        transformers.append(("category", encoder, [f.name for f in categories]))
    preprocess = ColumnTransformer(transformers, sparse_threshold=0.0, remainder="drop")
    return Pipeline([("preprocess", preprocess), (MODEL_STEP, _estimator(contract.task, algorithm, seed))])


def _params(contract: DatasetContract, pipeline: Pipeline) -> dict[str, Any]:
    estimator = pipeline.named_steps[MODEL_STEP]
    keys = {
        "gradient_boosting": ("max_iter", "learning_rate", "max_leaf_nodes", "min_samples_leaf", "random_state"),
        "random_forest": ("n_estimators", "max_depth", "min_samples_leaf", "random_state"),
        "logistic_regression": ("C", "max_iter"),
        "linear_regression": ("fit_intercept",),
    }[_algorithm(contract)]
    all_params = estimator.get_params()
    params: dict[str, Any] = {"algorithm": _algorithm(contract), "estimator": type(estimator).__name__}
    params.update({k: all_params[k] for k in keys})
    if hasattr(estimator, "n_iter_"):
        params["n_iter"] = int(np.max(estimator.n_iter_))
    serialisable: dict[str, Any] = json.loads(json.dumps(params, default=str))
    return serialisable


def export_onnx(contract: DatasetContract, pipeline: Pipeline) -> bytes:
    """Convert a fitted pipeline to ONNX with one named input per feature and LoopML metadata."""
    initial_types = [
        (f.name, FloatTensorType([None, 1]) if f.is_numeric else StringTensorType([None, 1])) for f in contract.features
    ]
    estimator = pipeline.named_steps[MODEL_STEP]
    classification = contract.task is Task.CLASSIFICATION
    options = {id(estimator): {"zipmap": False}} if classification else None
    try:
        model = convert_sklearn(pipeline, name=contract.name, initial_types=initial_types, options=options)
    except Exception as exc:  # skl2onnx raises a variety of types for unsupported shapes
        raise TrainingError(f"ONNX export failed: {exc}") from exc

    metadata = {
        META_TASK: str(contract.task),
        META_ALGORITHM: _algorithm(contract),
        META_FEATURES: json.dumps([{"name": f.name, "type": str(f.type)} for f in contract.features]),
        META_CONTRACT: contract.fingerprint(),
    }
    if classification:
        metadata[META_CLASSES] = json.dumps([str(c) for c in estimator.classes_])
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.doc_string = f"LoopML {contract.task} model for dataset '{contract.name}'"
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def fit_pipeline(contract: DatasetContract, frame: pd.DataFrame, *, seed: int = 7) -> Pipeline:
    """Fit the contract's pipeline on every row of `frame` (a `read_dataset` frame); no split, no export."""
    frame = frame.reset_index(drop=True)
    return _fit(contract, _features(contract, frame), _target(contract, frame), seed)


def _fit(contract: DatasetContract, features: pd.DataFrame, target: NDArray[Any], seed: int) -> Pipeline:
    if contract.task is Task.CLASSIFICATION and np.unique(target).size < 2:
        raise TrainingError(f"the training rows of '{contract.target}' hold a single class; need at least two")
    pipeline = build_pipeline(contract, seed)
    try:
        pipeline.fit(features, target)
    except ValueError as exc:
        raise TrainingError(f"scikit-learn could not fit the dataset: {exc}") from exc
    return pipeline


def predict_outputs(contract: DatasetContract, pipeline: Pipeline, frame: pd.DataFrame) -> list[dict[str, Any]]:
    """scikit-learn's predictions on a `read_dataset` frame, in the serving shape of `OnnxModel.predict`."""
    features = _features(contract, frame)
    if contract.task is Task.CLASSIFICATION:
        classes = [str(c) for c in pipeline.named_steps[MODEL_STEP].classes_]
        return classification_outputs(pipeline.predict(features).tolist(), pipeline.predict_proba(features), classes)
    return regression_outputs(np.asarray(pipeline.predict(features), dtype=np.float64))


def _split(
    contract: DatasetContract, n: int, y: NDArray[Any], seed: int, holdout_fraction: float
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    holdout = max(MIN_HOLDOUT_ROWS, round(n * holdout_fraction))
    if n - holdout < MIN_TRAIN_ROWS:
        raise TrainingError(
            f"{n} rows are too few: need at least {MIN_TRAIN_ROWS} to train and {MIN_HOLDOUT_ROWS} to hold out"
        )
    stratify = None
    if contract.task is Task.CLASSIFICATION:
        classes, counts = np.unique(y, return_counts=True)
        if classes.size < 2:
            raise TrainingError(f"target '{contract.target}' has a single class ({classes[0]!r}); need at least two")
        if counts.min() >= 2 and holdout >= classes.size and n - holdout >= classes.size:
            stratify = y
    index = np.arange(n)
    train_index, holdout_index = train_test_split(index, test_size=holdout, random_state=seed, stratify=stratify)
    return np.sort(train_index), np.sort(holdout_index)


def _holdout_csv(contract: DatasetContract, features: pd.DataFrame, target: NDArray[Any]) -> bytes:
    def cell(value: Any, kind: str) -> str:
        if kind == "category":
            return str(value)
        if np.isnan(value):
            return ""
        if kind == "int" and float(value).is_integer():
            return str(int(value))
        return repr(float(value))

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*contract.feature_names, contract.target])
    kinds = [str(f.type) for f in contract.features]
    columns = [features[f.name].tolist() for f in contract.features]
    for i, label in enumerate(target.tolist()):
        row = [cell(column[i], kind) for column, kind in zip(columns, kinds, strict=True)]
        writer.writerow([*row, label if contract.task is Task.CLASSIFICATION else repr(float(label))])
    return buffer.getvalue().encode("utf-8")


def train(
    contract: DatasetContract, frame: pd.DataFrame, *, seed: int = 7, holdout_fraction: float = 0.2
) -> TrainingResult:
    """Split, fit, export to ONNX, and package everything the evaluation and drift steps need."""
    if not 0.0 < holdout_fraction < 1.0:
        raise TrainingError(f"holdout_fraction must be between 0 and 1, got {holdout_fraction}")
    missing = [c for c in [*contract.feature_names, contract.target] if c not in frame.columns]
    if missing:
        raise TrainingError(f"dataset lacks contract columns: {', '.join(missing)}")
    features = _features(contract, frame.reset_index(drop=True))
    y = _target(contract, frame.reset_index(drop=True))
    train_index, holdout_index = _split(contract, len(features), y, seed, holdout_fraction)
    x_train, y_train = features.iloc[train_index].reset_index(drop=True), y[train_index]
    x_holdout, y_holdout = features.iloc[holdout_index].reset_index(drop=True), y[holdout_index]
    pipeline = _fit(contract, x_train, y_train, seed)
    onnx_model = export_onnx(contract, pipeline)

    reference = predict_outputs(contract, pipeline, x_holdout)
    metrics = compute_metrics(contract.task, y_holdout.tolist(), reference)
    baseline = drift.build_profile(
        contract,
        {f.name: x_train[f.name].to_numpy() for f in contract.features},
        predict_outputs(contract, pipeline, x_train),
        targets=y_train,
    )
    return TrainingResult(
        onnx_model=onnx_model,
        holdout_csv=_holdout_csv(contract, x_holdout, y_holdout),
        reference_predictions=reference,
        metrics=metrics,
        params=_params(contract, pipeline),
        baseline=baseline,
        train_rows=len(train_index),
        holdout_rows=len(holdout_index),
    )
