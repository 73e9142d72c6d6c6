"""Layer bundling with a fake pip: what gets installed, dropped, stripped and cached. No network, no real pip."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from infra.cdk import layer_bundling
from infra.cdk.layer_bundling import LayerBuilder, PipLayerBundling, layer_hash, without_extras
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
