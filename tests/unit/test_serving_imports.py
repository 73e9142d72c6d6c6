"""The serving path (serving, evaluation, drift) must run on the inference layer: numpy and onnxruntime only (and
orjson and msgspec, which the core layer ships)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from loopml_core.contract import DatasetContract
from loopml_core.training import train

CORE = Path(__file__).resolve().parents[2] / "layers" / "core"
SERVING_MODULES = ("serving", "evaluation", "drift")
FORBIDDEN = ("sklearn", "pandas", "skl2onnx", "onnx", "joblib", "cloudpickle", "dill", "scipy")
ALLOWED_THIRD_PARTY = {"numpy", "onnxruntime", "loopml_core", "pydantic", "orjson", "msgspec"}
# numpy itself imports the pickle module, so the subprocess cannot assert its absence; the source check below makes
# sure none of the serving modules loads anything through it.
PICKLE_LOADERS = {"pickle", "cPickle", "_pickle", "shelve", "marshal", "joblib", "cloudpickle", "dill"}

CONTRACT = {
    "name": "tiny",
    "task": "classification",
    "target": "y",
    "features": [
        {"name": "x", "type": "float", "nullable": True},
        {"name": "c", "type": "category", "values": ["a", "b"]},
    ],
}


def _imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def _run_isolated(script: str) -> subprocess.CompletedProcess[str]:
    """Run `script` in a fresh interpreter that sees only the core package, so imports start from nothing."""
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(CORE), "PATH": "/usr/bin:/bin"},
        timeout=60,
        check=False,
    )


def test_serving_modules_import_only_numpy_onnxruntime_and_stdlib() -> None:
    for module in SERVING_MODULES:
        roots = _imported_roots(CORE / "loopml_core" / f"{module}.py")
        third_party = {r for r in roots if r not in sys.stdlib_module_names and r != "__future__"}
        assert third_party <= ALLOWED_THIRD_PARTY, f"{module}.py imports {sorted(third_party - ALLOWED_THIRD_PARTY)}"
        assert not roots & PICKLE_LOADERS, f"{module}.py imports a pickle loader: {sorted(roots & PICKLE_LOADERS)}"


def test_serving_path_runs_without_training_libraries(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=300)
    c = rng.choice(["a", "b"], 300)
    frame = pd.DataFrame({"x": x, "c": c, "y": np.where(x + (c == "a") > 0.5, "p", "q")})
    contract = DatasetContract.model_validate(CONTRACT)
    result = train(contract, frame)
    (tmp_path / "model.onnx").write_bytes(result.onnx_model)
    (tmp_path / "holdout.csv").write_bytes(result.holdout_csv)
    (tmp_path / "reference.json").write_text(json.dumps(result.reference_predictions))
    (tmp_path / "baseline.json").write_text(json.dumps(result.baseline))

    script = textwrap.dedent(
        f"""
        import json, sys
        from pathlib import Path
        from loopml_core.contract import DatasetContract
        from loopml_core import drift, evaluation, serving

        tmp = Path({str(tmp_path)!r})
        contract = DatasetContract.model_validate(json.loads({json.dumps(json.dumps(CONTRACT))}))
        model = serving.OnnxModel((tmp / "model.onnx").read_bytes(), contract)
        out = model.predict([{{"x": 1.0, "c": "a"}}, {{"x": None, "c": "zz"}}])
        verdict = evaluation.evaluate(
            contract,
            (tmp / "model.onnx").read_bytes(),
            None,
            (tmp / "holdout.csv").read_bytes(),
            json.loads((tmp / "reference.json").read_text()),
        )
        records, _ = evaluation.read_holdout(contract, (tmp / "holdout.csv").read_bytes())
        report = drift.compare(json.loads((tmp / "baseline.json").read_text()), records, model.predict(records))
        loaded = sorted(m for m in {FORBIDDEN!r} if m in sys.modules or any(k.startswith(m + ".") for k in sys.modules))
        print(json.dumps({{"loaded": loaded, "outputs": out, "promote": verdict.promote, "rows": report.rows}}))
        """
    )
    completed = _run_isolated(script)
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["loaded"] == []
    assert len(report["outputs"]) == 2
    assert all(o["label"] in ("p", "q") and set(o["probabilities"]) == {"p", "q"} for o in report["outputs"])
    assert report["promote"] is True
    assert report["rows"] == result.holdout_rows


def test_training_runs_without_onnxruntime() -> None:
    """The training layer ships no onnxruntime; training shares serving's output shaping but must not need it."""
    script = textwrap.dedent(
        f"""
        import importlib.abc, json, sys

        class NoOnnxRuntime(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "onnxruntime" or name.startswith("onnxruntime."):
                    raise ImportError("onnxruntime is not in the training layer")
                return None

        sys.meta_path.insert(0, NoOnnxRuntime())
        import numpy as np, pandas as pd
        from loopml_core.contract import DatasetContract
        from loopml_core.training import train

        rng = np.random.default_rng(0)
        x = rng.normal(size=200)
        frame = pd.DataFrame({{"x": x, "c": rng.choice(["a", "b"], 200), "y": np.where(x > 0, "p", "q")}})
        result = train(DatasetContract.model_validate(json.loads({json.dumps(json.dumps(CONTRACT))})), frame)
        print(len(result.onnx_model), "onnxruntime" in sys.modules)
        """
    )
    completed = _run_isolated(script)
    assert completed.returncode == 0, completed.stderr
    size, loaded = completed.stdout.split()
    assert int(size) > 0 and loaded == "False"
