"""Serving: run an exported ONNX model with onnxruntime on validated records.

Only numpy and onnxruntime: the inference layer ships neither scikit-learn, pandas nor any pickle loader, and the
model artefact is an ONNX graph with the preprocessing inside it.

Graph convention shared with `loopml_core.training`: one input per contract feature, named after it, shape [None, 1];
int and float features are float32 tensors, category features string tensors (a null category is the empty string,
which the one-hot encoder ignores). Classifiers output a string label tensor and a float probability matrix whose
columns follow the class list stored in the model's metadata; regressors output one float tensor.

The request path is columnar: `OnnxModel.column_feeds` turns checked feature columns into the graph's tensors,
`OnnxModel.run` runs them, and `OnnxModel.outputs` reads the answer back as `ModelOutputs` (a label list and a
probability matrix, or a value list) that the response and the capture line are both written from. `predict` keeps
the record-by-record interface for evaluation and training's parity checks.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from numpy.typing import NDArray

from loopml_core.contract import DatasetContract, Task

if TYPE_CHECKING:
    import onnxruntime

# Keys of the ONNX model's metadata_props written by training and read back here.
META_TASK = "loopml.task"
META_CLASSES = "loopml.classes"
META_FEATURES = "loopml.features"
META_ALGORITHM = "loopml.algorithm"
META_CONTRACT = "loopml.contract_fingerprint"

PROBABILITY_DECIMALS = 6
NUMERIC_INPUT = "tensor(float)"
STRING_INPUT = "tensor(string)"


class ModelContractError(ValueError):
    """The ONNX model does not fit the dataset contract (inputs, task or classes differ)."""


def classification_outputs(
    labels: Sequence[Any], probabilities: NDArray[Any], classes: Sequence[str]
) -> list[dict[str, Any]]:
    """Serving shape of classifier outputs: `{"label": str, "probabilities": {class: p}}` with p rounded."""
    rounded = rounded_probabilities(probabilities)
    return [
        {"label": str(label), "probabilities": dict(zip(classes, row, strict=True))}
        for label, row in zip(labels, rounded, strict=True)
    ]


def regression_outputs(values: NDArray[Any]) -> list[dict[str, Any]]:
    """Serving shape of regressor outputs: `{"value": float}`."""
    return [{"value": value} for value in regression_values(values)]


def regression_values(values: NDArray[Any]) -> list[float]:
    """A regressor's outputs as Python floats. A float32 output becomes the shortest decimal that round-trips to it,
    not float64 noise such as 3.140000104904175 (orjson writes float32 that way; reading it back keeps it)."""
    flat = np.asarray(values).reshape(-1)
    if flat.dtype == np.float32:
        parsed: list[float] = orjson.loads(orjson.dumps(flat, option=orjson.OPT_SERIALIZE_NUMPY))
        return parsed
    converted: list[float] = flat.astype(np.float64).tolist()
    return converted


@dataclass(frozen=True)
class ModelOutputs:
    """A model's answers to n records, column by column, as the response and the capture line both need them.

    A classifier fills `labels` and `probabilities` (one row per record, columns in `classes` order, rounded to
    `PROBABILITY_DECIMALS`); a regressor fills `values`.
    """

    classes: list[str] | None
    labels: list[str] | None = None
    probabilities: list[list[float]] | None = None
    values: list[float] | None = None

    @property
    def prediction(self) -> list[Any]:
        """What was predicted for each record: a classifier's labels, a regressor's values."""
        return list(self.values or ()) if self.labels is None else self.labels

    def rows(self) -> list[dict[str, Any]]:
        """The serving shape, one dict per record in order, each with its `index` in the request."""
        if self.labels is None:
            return [{"index": index, "value": value} for index, value in enumerate(self.values or ())]
        classes = self.classes or []
        probabilities = self.probabilities or []
        if len(classes) == 2:  # the common case, written out: twice as fast as dict(zip()) per record
            first, second = classes
            return [
                {"index": index, "label": label, "probabilities": {first: p_first, second: p_second}}
                for index, (label, (p_first, p_second)) in enumerate(zip(self.labels, probabilities, strict=True))
            ]
        return [
            {"index": index, "label": label, "probabilities": dict(zip(classes, row, strict=True))}
            for index, (label, row) in enumerate(zip(self.labels, probabilities, strict=True))
        ]


def rounded_probabilities(probabilities: NDArray[Any]) -> list[list[float]]:
    """A probability matrix as rows of Python floats rounded to `PROBABILITY_DECIMALS`."""
    rows: list[list[float]] = np.round(np.asarray(probabilities, dtype=np.float64), PROBABILITY_DECIMALS).tolist()
    return rows


def category_column(values: Sequence[Any], has_null: bool = True) -> NDArray[Any]:
    """A category feature's values as the graph takes them: an object array of strings, "" for a null."""
    if not has_null:
        return np.array(values, dtype=object)
    return np.array([_category_cell(value) for value in values], dtype=object)


def _numeric_cell(value: Any) -> float:
    return math.nan if value is None else float(value)


def _category_cell(value: Any) -> str:
    return "" if value is None else str(value)


class OnnxModel:
    """One onnxruntime session for a model exported by `loopml_core.training`, checked against its contract."""

    def __init__(self, onnx_model: bytes, contract: DatasetContract) -> None:
        # Imported here so that training (no onnxruntime in its layer) can share the output shaping above.
        import onnxruntime as ort

        options = ort.SessionOptions()
        # A Lambda has one or two vCPUs; intra-op threads only add contention for the small batches served here.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.contract = contract
        self.session: onnxruntime.InferenceSession = ort.InferenceSession(
            onnx_model, sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        self._check_task()
        self._check_inputs()
        self.classes: list[str] | None = self._check_outputs()
        self._output_names = [o.name for o in self.session.get_outputs()]

    @property
    def algorithm(self) -> str | None:
        """The contract algorithm recorded at export, if the model carries LoopML metadata."""
        return self.metadata.get(META_ALGORITHM)

    def _check_task(self) -> None:
        task = self.metadata.get(META_TASK)
        if task is not None and task != str(self.contract.task):
            raise ModelContractError(f"model was trained for {task} but the contract says {self.contract.task}")

    def _check_inputs(self) -> None:
        inputs = {i.name: i.type for i in self.session.get_inputs()}
        expected = {f.name: NUMERIC_INPUT if f.is_numeric else STRING_INPUT for f in self.contract.features}
        if set(inputs) != set(expected):
            missing = sorted(set(expected) - set(inputs))
            extra = sorted(set(inputs) - set(expected))
            raise ModelContractError(
                f"model inputs do not match the contract features (missing {missing}, extra {extra})"
            )
        wrong = [
            f"{name} is {inputs[name]}, expected {kind}" for name, kind in expected.items() if inputs[name] != kind
        ]
        if wrong:
            raise ModelContractError("model input types do not match the contract: " + "; ".join(wrong))

    def _check_outputs(self) -> list[str] | None:
        outputs = self.session.get_outputs()
        if self.contract.task is Task.REGRESSION:
            if len(outputs) != 1:
                raise ModelContractError(f"a regressor has one output, this model has {len(outputs)}")
            return None
        if len(outputs) != 2 or outputs[0].type != STRING_INPUT or outputs[1].type != NUMERIC_INPUT:
            raise ModelContractError(
                "a classifier needs a string label output and a float probability matrix (export with zipmap off)"
            )
        raw = self.metadata.get(META_CLASSES)
        if raw is None:
            raise ModelContractError(f"classifier metadata has no '{META_CLASSES}'; was it exported by LoopML?")
        classes = [str(c) for c in json.loads(raw)]
        width = outputs[1].shape[-1] if outputs[1].shape else None
        if isinstance(width, int) and width != len(classes):
            raise ModelContractError(f"probability output has {width} columns for {len(classes)} classes")
        return classes

    def feeds(self, records: Sequence[Mapping[str, Any]]) -> dict[str, NDArray[Any]]:
        """One [n, 1] column per feature, typed as the graph expects."""
        feeds: dict[str, NDArray[Any]] = {}
        for f in self.contract.features:
            if f.is_numeric:
                column: NDArray[Any] = np.fromiter(
                    (_numeric_cell(r.get(f.name)) for r in records), dtype=np.float32, count=len(records)
                )
            else:
                column = np.array([_category_cell(r.get(f.name)) for r in records], dtype=object)
            feeds[f.name] = column.reshape(-1, 1)
        return feeds

    def column_feeds(
        self, numbers: NDArray[np.float64], categories: Mapping[str, NDArray[Any]]
    ) -> dict[str, NDArray[Any]]:
        """The graph's [n, 1] tensors from checked columns: `numbers` holds the int and float features, one row each
        in contract order, float64 with NaN for a null; `categories` each category feature as an object array of
        strings made by `category_column`."""
        as_float32 = numbers.astype(np.float32)
        feeds: dict[str, NDArray[Any]] = {}
        row = 0
        for f in self.contract.features:
            if f.is_numeric:
                feeds[f.name] = as_float32[row].reshape(-1, 1)
                row += 1
                continue
            feeds[f.name] = categories[f.name].reshape(-1, 1)
        return feeds

    def outputs(self, results: Sequence[NDArray[Any]]) -> ModelOutputs:
        """What `run` returned, read back column by column."""
        if self.classes is None:
            return ModelOutputs(None, values=regression_values(results[0]))
        labels: list[str] = np.asarray(results[0]).reshape(-1).tolist()  # onnxruntime gives str objects
        return ModelOutputs(self.classes, labels=labels, probabilities=rounded_probabilities(results[1]))

    def run(self, feeds: Mapping[str, NDArray[Any]]) -> list[NDArray[Any]]:
        """One session run on [n, 1] feature columns typed as the graph expects (see `feeds`): the raw outputs, the
        label and probability tensors of a classifier or the value tensor of a regressor."""
        return [np.asarray(output) for output in self.session.run(self._output_names, dict(feeds))]

    def predict(self, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Predict validated records in one session run; outputs are in the serving shape, in record order."""
        if not records:
            return []
        results = self.run(self.feeds(records))
        if self.classes is None:
            return regression_outputs(np.asarray(results[0]))
        return classification_outputs(np.asarray(results[0]).reshape(-1).tolist(), np.asarray(results[1]), self.classes)
