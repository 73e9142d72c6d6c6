"""Each handler imports with only the packages its declared layers ship: a core-only function must not pull numpy."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from infra.declaration import FUNCTIONS, FunctionSpec, Layer

HEAVY = {"numpy", "pyarrow", "pandas", "sklearn", "scipy", "onnxruntime", "onnx", "skl2onnx", "fastparquet"}
SHIPPED = {
    Layer.CORE: set(),
    Layer.DATA: {"numpy", "pyarrow"},
    Layer.TRAINING: {"numpy", "pandas", "sklearn", "scipy", "onnx", "skl2onnx", "fastparquet"},
    Layer.INFERENCE: {"numpy", "onnxruntime"},
}


@pytest.mark.parametrize("spec", FUNCTIONS.values(), ids=lambda spec: spec.key)
def test_a_handler_imports_with_its_layers_alone(spec: FunctionSpec) -> None:
    blocked = sorted(HEAVY - set().union(*(SHIPPED[layer] for layer in spec.layers)))
    script = textwrap.dedent(
        f"""
        import importlib.abc, importlib.util, sys

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {blocked!r}:
                    raise ImportError(f"{{name}} is not in this function's layers")
                return None

        sys.meta_path.insert(0, Block())
        loader = importlib.util.spec_from_file_location("handler", {str(spec.code_dir / "handler.py")!r})
        module = importlib.util.module_from_spec(loader)
        loader.loader.exec_module(module)
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
