"""Each handler imports with only the packages its declared layers ship: a core-only function must not pull numpy."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from infra.declaration import FUNCTIONS, FunctionSpec, Layer

HEAVY = {"numpy", "pyarrow", "pandas", "sklearn", "scipy", "onnxruntime", "onnx", "skl2onnx", "fastparquet"}
SHIPPED = {  # by layer name
    "core": set(),
    "data": {"numpy", "pyarrow"},
    "training": {"numpy", "pandas", "sklearn", "scipy", "onnx", "skl2onnx", "fastparquet"},
    "inference": {"numpy", "onnxruntime"},
    "scoring": {"numpy", "pyarrow", "onnxruntime"},
}
# What the predict function's cold start must not pay for at import: the AWS SDK's clients come when the first
# request needs the registry, the X-Ray SDK only when tracing is on, onnxruntime when the first model loads.
# (Powertools imports botocore's package itself, cheaply, to add its user agent to sessions.)
NOT_AT_PREDICT_IMPORT = ("boto3", "botocore.session", "botocore.client", "s3transfer", "aws_xray_sdk", "onnxruntime")


def test_every_layer_is_known_here() -> None:
    assert {layer.value for layer in Layer} <= set(SHIPPED)


@pytest.mark.parametrize("spec", FUNCTIONS.values(), ids=lambda spec: spec.key)
def test_a_handler_imports_with_its_layers_alone(spec: FunctionSpec) -> None:
    blocked = sorted(HEAVY - set().union(*(SHIPPED[layer.value] for layer in spec.layers)))
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


def test_the_predict_handler_imports_nothing_its_first_request_can_do_without() -> None:
    handler = FUNCTIONS["predict"].code_dir / "handler.py"
    script = textwrap.dedent(
        f"""
        import importlib.util, os, sys
        os.environ["LAMBDA_TASK_ROOT"] = "/var/task"  # as in Lambda, with tracing switched off as locally
        os.environ["POWERTOOLS_TRACE_DISABLED"] = "true"
        loader = importlib.util.spec_from_file_location("handler", {str(handler)!r})
        module = importlib.util.module_from_spec(loader)
        loader.loader.exec_module(module)
        print(sorted(m for m in {NOT_AT_PREDICT_IMPORT!r} if m in sys.modules))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_the_predict_handler_holds_the_collector_off_until_its_first_answer() -> None:
    # A cold start's allocations are not garbage: no collector pass until the first answer, then the collector is
    # back, with what the cold start loaded frozen out of its way.
    handler = FUNCTIONS["predict"].code_dir / "handler.py"
    script = textwrap.dedent(
        f"""
        import gc, importlib.util, os, sys
        from infra.local.api_gateway import match_route, proxy_event
        from infra.local.runner import LambdaContext
        os.environ["AWS_LAMBDA_FUNCTION_NAME"] = "loopml-predict"
        os.environ["POWERTOOLS_TRACE_DISABLED"] = "true"
        loader = importlib.util.spec_from_file_location("handler", {str(handler)!r})
        module = importlib.util.module_from_spec(loader)
        loader.loader.exec_module(module)
        imported = gc.isenabled()
        route, parameters = match_route("GET", "/health")
        event = proxy_event(route, parameters, "GET", "/health", {{}}, b"")
        reply = module.lambda_handler(event, LambdaContext("loopml-predict", 1024, 29))
        print(imported, reply["statusCode"], gc.isenabled(), gc.get_freeze_count() > 0)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False", "200", "True", "True"]
