"""Layer bundling with a fake pip: what gets installed, dropped, stripped and cached. No network, no real pip."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from infra.cdk import layer_bundling
from infra.cdk.layer_bundling import (
    PACKAGE_STRIPS,
    LayerBuilder,
    PipLayerBundling,
    elf_dynamic,
    layer_hash,
    shared_objects,
    strip_package,
    strip_tree,
    without_extras,
)
from infra.declaration import LAYERS, Layer

# Installs one fake distribution per requirement (plus six and botocore, as real resolutions pull in), each with a
# test suite, stub files and a RECORD, and logs its own command line.
FAKE_PIP = r"""
import json, os, sys
from pathlib import Path
args = sys.argv[1:]
target = Path(args[args.index("--target") + 1])
with open(os.environ["FAKE_PIP_LOG"], "a") as log:
    log.write(json.dumps(args) + "\n")
requirements = [a for a in args if "==" in a and not a.startswith("-")]
for requirement in requirements + ["six==1.17.0", "botocore==1.44.5"]:
    name, version = requirement.split("[")[0].split("==")[0], requirement.split("==")[1]
    package = name.replace("-", "_")
    files = [f"{package}/__init__.py", f"{package}/tests/test_it.py", f"{package}/api.pyi"]
    for file in files:
        (target / file).parent.mkdir(parents=True, exist_ok=True)
        (target / file).write_text("x = 1\n")
    info = target / f"{package}-{version}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\nbody\n")
    (info / "RECORD").write_text("".join(f"{f},,\n" for f in files) + f"{info.name}/METADATA,,\n")
"""


@pytest.fixture
def builder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LayerBuilder:
    script = tmp_path / "fake_pip.py"
    script.write_text(FAKE_PIP)
    monkeypatch.setenv("FAKE_PIP_LOG", str(tmp_path / "pip.log"))
    return LayerBuilder(tmp_path / "layers", pip=(sys.executable, str(script)), log=lambda _: None)


def pip_calls(builder: LayerBuilder) -> list[list[str]]:
    log = builder.build_root.parent / "pip.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_builds_the_base_layer_first_then_drops_what_it_ships(builder: LayerBuilder) -> None:
    site = builder.build(Layer.TRAINING) / "python"
    calls = pip_calls(builder)
    assert len(calls) == 2  # core, then training
    assert calls[0][-len(LAYERS[Layer.CORE].requirements) :] == list(LAYERS[Layer.CORE].requirements)
    assert calls[1][-len(LAYERS[Layer.TRAINING].requirements) :] == list(LAYERS[Layer.TRAINING].requirements)
    for flag in ("--platform", "manylinux2014_x86_64", "--python-version", "3.12", "--only-binary=:all:"):
        assert flag in calls[1]
    assert "six" in json.loads((builder.build_root / "training.json").read_text())["dropped"]
    assert (site / "scikit_learn" / "__init__.py").exists()
    assert not (site / "six").exists()  # the core layer ships it
    assert not (site / "botocore").exists()  # the Lambda runtime ships it
    assert not list(site.rglob("tests")) and not list(site.rglob("*.pyi"))
    core_site = builder.layer_dir(Layer.CORE) / "python"
    assert (core_site / "loopml_core" / "__init__.py").exists()
    assert (core_site / "six" / "__init__.py").exists()
    assert not (core_site / "botocore").exists()


def test_constraints_pin_every_declared_requirement_and_the_base_resolution(
    builder: LayerBuilder, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    original = builder._pip_install

    def spy(site: Path, requirements: Sequence[str], constraints: Sequence[str], staging: Path) -> None:
        seen.extend(constraints)
        original(site, requirements, constraints, staging)

    monkeypatch.setattr(builder, "_pip_install", spy)
    builder.build(Layer.INFERENCE)
    assert "aws-lambda-powertools==3.37.0" in seen  # extras are not allowed in constraints
    assert "numpy==2.4.6" in seen
    assert "six==1.17.0" in seen  # what the base layer resolved
    assert without_extras("aws-lambda-powertools[tracer,parser]==3.37.0") == "aws-lambda-powertools==3.37.0"


def test_unchanged_layers_are_not_rebuilt(builder: LayerBuilder) -> None:
    builder.build(Layer.DATA)
    calls = len(pip_calls(builder))
    builder.build(Layer.DATA)
    builder.build(Layer.CORE)
    assert len(pip_calls(builder)) == calls


def test_hash_follows_the_core_source_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "loopml_core"
    package.mkdir()
    (package / "__init__.py").write_text("x = 1\n")
    monkeypatch.setattr(layer_bundling, "_core_package_dir", lambda spec: package)
    before = {key: layer_hash(key) for key in LAYERS}
    assert len(set(before.values())) == len(LAYERS)
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "x.cpython-312.pyc").write_bytes(b"junk")
    assert {key: layer_hash(key) for key in LAYERS} == before
    (package / "__init__.py").write_text("x = 2\n")
    after = {key: layer_hash(key) for key in LAYERS}
    assert after[Layer.CORE] != before[Layer.CORE]
    assert {k: v for k, v in after.items() if k != Layer.CORE} == {k: v for k, v in before.items() if k != Layer.CORE}


def test_a_core_code_change_refreshes_the_package_without_pip(
    builder: LayerBuilder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "loopml_core"
    package.mkdir()
    (package / "__init__.py").write_text("x = 1\n")
    monkeypatch.setattr(layer_bundling, "_core_package_dir", lambda spec: package)
    site = builder.build(Layer.CORE) / "python"
    calls = len(pip_calls(builder))
    (package / "__init__.py").write_text("x = 2\n")
    (package / "new.py").write_text("y = 1\n")
    assert not builder.is_current(Layer.CORE)
    builder.build(Layer.CORE)
    assert len(pip_calls(builder)) == calls
    assert (site / "loopml_core" / "__init__.py").read_text() == "x = 2\n"
    assert (site / "loopml_core" / "new.py").exists()
    assert (site / "six" / "__init__.py").exists()
    assert builder.is_current(Layer.CORE)


def test_local_bundling_copies_the_built_layer(builder: LayerBuilder, tmp_path: Path) -> None:
    output = tmp_path / "asset"
    output.mkdir()
    assert PipLayerBundling(Layer.CORE, builder).try_bundle(str(output), image=None) is True  # type: ignore[arg-type]
    assert (output / "python" / "loopml_core" / "__init__.py").exists()


# --- pyarrow: what validation never loads goes, every library a kept module needs stays ------------------------------

# What the Lambda runtime's Amazon Linux provides; every other library a module needs must ship in the layer.
SYSTEM_LIBRARIES = frozenset(
    {
        "libc.so.6",
        "libm.so.6",
        "libdl.so.2",
        "librt.so.1",
        "libpthread.so.0",
        "libstdc++.so.6",
        "libgcc_s.so.1",
        "ld-linux-x86-64.so.2",
        "libz.so.1",  # zlib: the runtime's own Python links it
    }
)
# The modules validation imports: pyarrow, pyarrow.csv, pyarrow.compute, pyarrow.parquet (and pyarrow.fs under it).
VALIDATION_MODULES = ("lib", "_csv", "_compute", "_parquet", "_fs")


def fake_elf(soname: str | None, needed: Sequence[str]) -> bytes:
    """A minimal ELF64 shared object: one PT_LOAD covering the file and a PT_DYNAMIC with SONAME and NEEDED."""
    strings = b"\0"
    offsets = {}
    for name in [*needed, *([soname] if soname else [])]:
        offsets[name] = len(strings)
        strings += name.encode() + b"\0"
    strtab_offset = 64 + 2 * 56
    dynamic_offset = (strtab_offset + len(strings) + 7) // 8 * 8
    entries = [(1, offsets[name]) for name in needed] + ([(14, offsets[soname])] if soname else [])
    entries += [(5, strtab_offset), (0, 0)]
    dynamic = b"".join(struct.pack("<qQ", tag, value) for tag, value in entries)
    size = dynamic_offset + len(dynamic)
    header = struct.pack("<16sHHIQQQIHHHHHH", b"\x7fELF\x02\x01\x01", 3, 62, 1, 0, 64, 0, 0, 64, 56, 2, 64, 0, 0)
    load = struct.pack("<IIQQQQQQ", 1, 5, 0, 0, 0, size, size, 0x1000)
    dyn = struct.pack("<IIQQQQQQ", 2, 6, dynamic_offset, dynamic_offset, dynamic_offset, len(dynamic), len(dynamic), 8)
    body = header + load + dyn + strings
    return body + b"\0" * (dynamic_offset - len(body)) + dynamic


PYARROW_WHEEL = {
    # file -> (SONAME, NEEDED), shaped like pyarrow 26's wheel
    "lib.cpython-312-x86_64-linux-gnu.so": (None, ["libarrow_python.so.2600", "libarrow.so.2600", "libc.so.6"]),
    "_csv.cpython-312-x86_64-linux-gnu.so": (None, ["libarrow_python.so.2600", "libarrow.so.2600"]),
    "_flight.cpython-312-x86_64-linux-gnu.so": (None, ["libarrow_python_flight.so.2600", "libarrow_flight.so.2600"]),
    "_s3fs.cpython-312-x86_64-linux-gnu.so": (None, ["libarrow_s3.so.2600", "libarrow.so.2600"]),
    "libarrow.so.2600": ("libarrow.so.2600", ["libstdc++.so.6"]),
    "libarrow_python.so": ("libarrow_python.so.2600", ["libarrow.so.2600"]),
    "libarrow_python.so.2600": ("libarrow_python.so.2600", ["libarrow.so.2600"]),
    "libarrow_python.so.2600.1.0": ("libarrow_python.so.2600", ["libarrow.so.2600"]),
    "libarrow_python_flight.so.2600": ("libarrow_python_flight.so.2600", ["libarrow_flight.so.2600"]),
    "libarrow_flight.so.2600": ("libarrow_flight.so.2600", ["libarrow.so.2600"]),
    "libarrow_s3.so.2600": ("libarrow_s3.so.2600", ["libarrow.so.2600"]),
}


def fake_pyarrow(site: Path) -> Path:
    package = site / "pyarrow"
    for name, (soname, needed) in PYARROW_WHEEL.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_bytes(fake_elf(soname, needed))
    for name in ("__init__.py", "csv.py", "flight.py", "gandiva.pyx", "lib.pxd", "array.pxi", "include/arrow/api.h"):
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text("x = 1\n")
    (package / "src" / "arrow" / "python").mkdir(parents=True)
    (package / "src" / "arrow" / "python" / "common.cc").write_text("int x;\n")
    return package


def test_elf_dynamic_reads_soname_and_needed(tmp_path: Path) -> None:
    (tmp_path / "libx.so.1").write_bytes(fake_elf("libx.so.1", ["liby.so.2", "libc.so.6"]))
    (tmp_path / "x.py").write_text("x = 1\n")
    assert elf_dynamic(tmp_path / "libx.so.1") == ("libx.so.1", ["liby.so.2", "libc.so.6"])
    assert elf_dynamic(tmp_path / "x.py") is None


def test_pyarrow_keeps_what_validation_loads_and_drops_the_rest(tmp_path: Path) -> None:
    site = tmp_path / "python"
    package = fake_pyarrow(site)
    strip_tree(site)
    strip_package(site, "pyarrow", PACKAGE_STRIPS["pyarrow"])
    kept = sorted(path.relative_to(package).as_posix() for path in package.rglob("*") if path.is_file())
    assert kept == [
        "__init__.py",
        "_csv.cpython-312-x86_64-linux-gnu.so",
        "csv.py",
        "lib.cpython-312-x86_64-linux-gnu.so",
        "libarrow.so.2600",
        "libarrow_python.so.2600",  # the SONAME the loader asks for; the other two copies are gone
    ]
    present = {path.name for path in shared_objects(package)}
    for _path, (_soname, needed) in shared_objects(package).items():
        assert set(needed) <= present | SYSTEM_LIBRARIES


def test_stripping_a_library_a_kept_module_needs_fails_the_build(tmp_path: Path) -> None:
    site = tmp_path / "python"
    fake_pyarrow(site)
    with pytest.raises(RuntimeError, match=r"lib\.cpython-312-x86_64-linux-gnu\.so needs libarrow\.so\.2600"):
        strip_package(site, "pyarrow", (*PACKAGE_STRIPS["pyarrow"], "pyarrow/libarrow.so*"))


def test_strip_rules_are_part_of_every_layer_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    before = {key: layer_hash(key) for key in LAYERS}
    monkeypatch.setitem(layer_bundling.PACKAGE_STRIPS, "pyarrow", (*PACKAGE_STRIPS["pyarrow"], "pyarrow/_orc.*"))
    assert all(layer_hash(key) != before[key] for key in LAYERS)


def test_the_built_data_layer_ships_every_library_its_pyarrow_modules_need() -> None:
    # Built for real (pip, Python 3.12 manylinux wheels) unless the build cache already holds it.
    builder = LayerBuilder(log=lambda _: None)
    package = builder.build(Layer.DATA) / "python" / "pyarrow"
    objects = shared_objects(package)
    names = {path.name for path in objects}
    for module in VALIDATION_MODULES:
        assert f"{module}.cpython-312-x86_64-linux-gnu.so" in names
    for path, (soname, needed) in objects.items():
        assert set(needed) <= names | SYSTEM_LIBRARIES, path.name
        assert soname is None or path.name == soname, f"{path.name} is a second copy of {soname}"
    assert not [name for name in names if "flight" in name or "libarrow_s3" in name]
    assert not (package / "include").exists() and not (package / "src").exists()
    assert not [path for path in package.rglob("*") if path.suffix in {".pyx", ".pxd", ".pxi", ".h"}]


# --- onnxruntime and numpy: what serving never loads goes ------------------------------------------------------------

ONNXRUNTIME_WHEEL = {
    # file -> (SONAME, NEEDED), shaped like onnxruntime 1.32's wheel: the Python module links the runtime in
    "capi/onnxruntime_pybind11_state.cpython-312-x86_64-linux-gnu.so": (None, ["libstdc++.so.6", "libc.so.6"]),
    "capi/libonnxruntime.so.1.32.0": ("libonnxruntime.so.1", ["libstdc++.so.6", "libc.so.6"]),
    "capi/libonnxruntime_providers_shared.so": ("libonnxruntime_providers_shared.so", ["libc.so.6"]),
}


def fake_onnxruntime(site: Path) -> Path:
    package = site / "onnxruntime"
    for name, (soname, needed) in ONNXRUNTIME_WHEEL.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_bytes(fake_elf(soname, needed))
    for name in (
        "__init__.py",
        "capi/__init__.py",
        "capi/onnxruntime_inference_collection.py",
        "tools/symbolic_shape_infer.py",
        "quantization/quantize.py",
        "transformers/optimizer.py",
        "backend/backend.py",
        "datasets/__init__.py",
    ):
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text("x = 1\n")
    return package


def test_onnxruntime_keeps_its_python_module_and_drops_its_c_api_and_tools(tmp_path: Path) -> None:
    site = tmp_path / "python"
    package = fake_onnxruntime(site)
    strip_package(site, "onnxruntime", PACKAGE_STRIPS["onnxruntime"])
    kept = sorted(path.relative_to(package).as_posix() for path in package.rglob("*") if path.is_file())
    assert kept == [
        "__init__.py",
        "capi/__init__.py",
        "capi/libonnxruntime_providers_shared.so",
        "capi/onnxruntime_inference_collection.py",
        "capi/onnxruntime_pybind11_state.cpython-312-x86_64-linux-gnu.so",
    ]


def dist_info(site: Path, name: str, requires: Sequence[str] = (), files: Sequence[str] = ()) -> None:
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    header = "".join(f"Requires-Dist: {requirement}\n" for requirement in requires)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n{header}\nbody\n")
    for file in files:
        (site / file).parent.mkdir(parents=True, exist_ok=True)
        (site / file).write_text("x = 1\n")
    (info / "RECORD").write_text("".join(f"{f},,\n" for f in files) + f"{info.name}/METADATA,,\n")


def test_what_only_onnxruntimes_tools_need_goes_unless_something_kept_needs_it(tmp_path: Path) -> None:
    site = tmp_path / "python"
    dist_info(site, "onnxruntime", ["flatbuffers", "numpy>=1.21", "packaging", "protobuf>=4", 'sympy; extra == "x"'])
    dist_info(site, "flatbuffers", files=["flatbuffers/__init__.py"])
    dist_info(site, "packaging", files=["packaging/__init__.py"])
    dist_info(site, "protobuf", files=["google/protobuf/__init__.py"])
    dist_info(site, "numpy")
    assert layer_bundling.unused_tooling_dependencies(site, ["onnxruntime==1.32.0"]) == [
        "flatbuffers",
        "packaging",
        "protobuf",
    ]
    dist_info(site, "onnx", ["protobuf>=4", "numpy"])  # the training layer: onnx needs protobuf
    assert layer_bundling.unused_tooling_dependencies(site, ["onnxruntime==1.32.0", "packaging==26.3"]) == [
        "flatbuffers"
    ]


# --- bytecode: compiled for the runtime's Python, valid whatever the zip's timestamps ---------------------------------

PYC_HEADER_SCRIPT = """
import marshal, sys
from pathlib import Path
for path in sys.argv[1:]:
    data = Path(path).read_bytes()
    flags = int.from_bytes(data[4:8], "little")
    print(flags, marshal.loads(data[16:]).co_filename)
"""


def test_layers_ship_unchecked_hash_bytecode_naming_their_lambda_paths(builder: LayerBuilder) -> None:
    python = layer_bundling.find_python()
    assert python is not None, "a Python 3.12 (Lambda's runtime) is needed to check the layers' bytecode"
    site = builder.build(Layer.CORE) / "python"
    sources = sorted(site.rglob("*.py"))
    compiled = [source.parent / "__pycache__" / f"{source.stem}.cpython-312.pyc" for source in sources]
    assert sources and all(path.is_file() for path in compiled)
    done = subprocess.run(
        [python, "-c", PYC_HEADER_SCRIPT, *map(str, compiled[:3])], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    for line, source in zip(done.stdout.splitlines(), sources[:3], strict=True):
        flags, filename = line.split(" ", 1)
        assert flags == "1"  # hash-based, not checked against the source: a zip's timestamps cannot stale it
        assert filename == f"/opt/python/{source.relative_to(site).as_posix()}"
    assert json.loads((builder.build_root / "core.json").read_text())["bytecode"] == "cpython-312"


def test_without_a_runtime_python_layers_ship_source_only_and_the_build_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "fake_pip.py"
    script.write_text(FAKE_PIP)
    monkeypatch.setenv("FAKE_PIP_LOG", str(tmp_path / "pip.log"))
    monkeypatch.setattr(layer_bundling, "find_python", lambda version=layer_bundling.PYTHON_VERSION: None)
    said: list[str] = []
    builder = LayerBuilder(tmp_path / "layers", pip=(sys.executable, str(script)), log=said.append)
    site = builder.build(Layer.CORE) / "python"
    assert (site / "loopml_core" / "__init__.py").exists() and not list(site.rglob("*.pyc"))
    assert any("no Python 3.12 found" in message and "LOOPML_LAMBDA_PYTHON" in message for message in said)


def test_whether_layers_ship_bytecode_is_part_of_every_layer_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    before = {key: layer_hash(key) for key in LAYERS}
    monkeypatch.setattr(layer_bundling, "find_python", lambda version=layer_bundling.PYTHON_VERSION: None)
    assert all(layer_hash(key) != before[key] for key in LAYERS)


# --- the real predict bundle: every module serving loads is there and runs on Python 3.12 ---------------------------

SERVE_IN_THE_BUNDLE = """
import json, sys
from pathlib import Path
from loopml_core.contract import DatasetContract
from loopml_core.logic.inference import validate_records
from loopml_core.serving import OnnxModel
model = OnnxModel(Path(sys.argv[1]).read_bytes(), DatasetContract.model_validate(json.loads(sys.argv[2])))
columns = validate_records(model.contract, [{"x": 1.5, "c": "a"}, {"x": None, "c": None}], 10)
outputs = model.outputs(model.run(model.column_feeds(columns.numbers, columns.categories)))
print(json.dumps(outputs.rows()))
"""


def test_the_built_predict_layers_serve_a_model_on_python_312(tmp_path: Path) -> None:
    import numpy as np
    import pandas as pd

    from infra.declaration import FUNCTIONS
    from loopml_core.contract import DatasetContract
    from loopml_core.training import train

    python = layer_bundling.find_python()
    assert python is not None, "a Python 3.12 (Lambda's runtime) is needed to run the cp312 layers"
    # Given the predict function's layers as built for Lambda (pip, manylinux cp312 wheels; cached)
    builder = LayerBuilder(log=lambda _: None)
    sites = [builder.build(key) / "python" for key in FUNCTIONS["predict"].layers]
    inference = builder.layer_dir(Layer.INFERENCE) / "python"
    for gone in ("onnxruntime/tools", "onnxruntime/transformers", "onnxruntime/quantization", "google", "flatbuffers"):
        assert not (inference / gone).exists(), gone
    assert not list((inference / "onnxruntime" / "capi").glob("libonnxruntime.so*"))
    names = {path.name for site in sites for path in shared_objects(site)}
    for site in sites:
        for path, (_soname, needed) in shared_objects(site).items():
            assert set(needed) <= names | SYSTEM_LIBRARIES, path.name
    # And a model exported as training exports it
    contract = {
        "name": "tiny",
        "task": "classification",
        "target": "y",
        "features": [
            {"name": "x", "type": "float", "nullable": True},
            {"name": "c", "type": "category", "values": ["a", "b"], "nullable": True},
        ],
    }
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=200), "c": rng.choice(["a", "b"], 200)})
    frame["y"] = np.where(frame["x"] > 0, "p", "q")
    (tmp_path / "model.onnx").write_bytes(train(DatasetContract.model_validate(contract), frame).onnx_model)
    # When Python 3.12 serves it with nothing but those layers on its path
    done = subprocess.run(
        [python, "-s", "-c", SERVE_IN_THE_BUNDLE, str(tmp_path / "model.onnx"), json.dumps(contract)],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": ":".join(map(str, sites)), "PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"},
        timeout=120,
        check=False,
    )
    # Then it answers both records
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(done.stdout)
    assert [row["index"] for row in rows] == [0, 1] and all(row["label"] in ("p", "q") for row in rows)


def test_a_layer_whose_bytecode_would_put_a_function_over_lambdas_limit_ships_source_only(
    builder: LayerBuilder, monkeypatch: pytest.MonkeyPatch
) -> None:
    said: list[str] = []
    builder.log = said.append
    core = builder.build(Layer.CORE) / "python"  # the base layer, in every function, always keeps its bytecode
    limit = layer_bundling.tree_size(core) + 2_000  # room for the training layer's source, not its bytecode too
    monkeypatch.setattr(layer_bundling, "LAMBDA_UNZIPPED_LIMIT", limit)
    training = builder.build(Layer.TRAINING) / "python"
    assert list(core.rglob("*.pyc")) and not list(training.rglob("*.pyc"))
    assert (training / "scikit_learn" / "__init__.py").exists()
    assert any("left out of layer training: train_model" in message for message in said)
    assert json.loads((builder.build_root / "training.json").read_text())["bytecode"] is None
