"""Serving: run an exported ONNX model with onnxruntime on validated records.

Only numpy and onnxruntime: the inference layer ships neither scikit-learn, pandas nor any pickle loader, and the
model artefact is an ONNX graph with the preprocessing inside it.

Graph convention shared with `loopml_core.training`: one input per contract feature, named after it, shape [None, 1];
int and float features are float32 tensors, category features string tensors (a null category is the empty string,
which the one-hot encoder ignores). Classifiers output a string label tensor and a float probability matrix whose
columns follow the class list stored in the model's metadata; regressors output one float tensor.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
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
    rounded = np.round(np.asarray(probabilities, dtype=np.float64), PROBABILITY_DECIMALS).tolist()
    return [
        {"label": str(label), "probabilities": dict(zip(classes, row, strict=True))}
        for label, row in zip(labels, rounded, strict=True)
    ]


def regression_outputs(values: NDArray[Any]) -> list[dict[str, Any]]:
    """Serving shape of regressor outputs: `{"value": float}`."""
    flat = np.asarray(values).reshape(-1)
    if flat.dtype == np.float32:
        # The shortest decimal that round-trips to the float32, not float64 noise such as 3.140000104904175.
        return [{"value": float(str(v))} for v in flat]
    return [{"value": float(v)} for v in flat.astype(np.float64)]


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
