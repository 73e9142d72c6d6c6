"""Builds the Lambda layers with pip on the host, without Docker.

pip downloads manylinux wheels for the Lambda runtime's CPython (`--platform ... --only-binary=:all:`), so the host's
own Python version and OS do not matter. Every layer is built once into `.build/layers/<key>/python` and reused while
its hash is unchanged; CDK's local bundling (`PipLayerBundling`) and `benchmarks/package_size.py` share that cache.

Layers are stacked in /opt/python, so a package shipped by two layers of one function would be overwritten file by
file by whichever layer comes last. To keep that from ever mixing two versions, every layer is resolved against the
pins of all layers and against what the base layer (the one shipping loopml_core, which every function has) already
resolved, and then drops whatever the base layer already ships.

What a function never loads is left out (`PACKAGE_STRIPS`, `TOOLING_DEPENDENCIES`): test suites, stubs, headers,
onnxruntime's C API library and its Python tooling, and the distributions only that tooling imports. Every shared
library a kept module needs stays; the build checks it.

Layers ship bytecode where it fits. Lambda's /opt is read-only and CDK zips assets with a fixed timestamp, so without
`.pyc` files compiled for the runtime's Python every cold start compiles every module it imports (0.4 s of the
predict function's). The `.pyc` are compiled by a CPython of the runtime's version (`find_python`), as unchecked-hash
files (a zip's timestamps cannot invalidate them) that name their source as it lies in /opt/python. With no such
interpreter on the host the layers are built without bytecode, and the build says so; a layer whose bytecode would
put one of its functions over Lambda's 250 MiB ships without it, and the build says that too.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import DockerImage, ILocalBundling

from infra.declaration import FUNCTIONS, LAMBDA_RUNTIME, LAYERS, LAYERS_DIR, ROOT, Layer, LayerSpec

# Bump whenever the build or strip rules change: it is part of every layer's hash, so all layers are rebuilt.
BUNDLER_VERSION = "4"
BUILD_ROOT = ROOT / ".build" / "layers"
CORE_PACKAGE = "loopml_core"
PYTHON_VERSION = LAMBDA_RUNTIME.removeprefix("python")
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_28_x86_64")
LAMBDA_PYTHON_ENV = "LOOPML_LAMBDA_PYTHON"  # an interpreter of the runtime's version to compile bytecode with
LAMBDA_SITE = "/opt/python"  # where Lambda extracts a layer's python/ directory
LAMBDA_UNZIPPED_LIMIT = 262_144_000  # bytes of a function's code and layers, unzipped (250 MiB)

# The Lambda Python runtime already ships the AWS SDK; layers would only shadow it with a second copy.
RUNTIME_PROVIDED = frozenset({"boto3", "botocore", "s3transfer", "jmespath", "urllib3"})
# Test suites, caches and build-time files that nothing imports at run time.
STRIPPED_DIRS = frozenset({"__pycache__", "tests", "test"})
STRIPPED_SUFFIXES = (".pyc", ".pyo", ".pyi", ".pxd", ".pyx", ".c", ".cpp", ".h", ".hpp")
# Per distribution, what its wheel ships that LoopML never loads (globs relative to the layer's python/ directory).
# Validation reads CSV, gzip-compressed CSV and Parquet from bytes the ObjectStore adapter fetched with boto3, so
# pyarrow's RPC (Flight), its own S3 client, Gandiva, its C++ test module, headers, sources and Cython files go.
# Every shared library a kept module NEEDS stays: `strip_package` checks that after stripping.
PACKAGE_STRIPS: dict[str, tuple[str, ...]] = {
    "pyarrow": (
        "pyarrow/include",
        "pyarrow/src",
        "pyarrow/*flight*",
        "pyarrow/_s3fs.*",
        "pyarrow/libarrow_s3.so*",
        "pyarrow/*gandiva*",
        "pyarrow/_pyarrow_cpp_tests.*",
        "pyarrow/*.pxi",
    ),
    # The Python module links the runtime in: libonnxruntime.so is the C API for native callers, and nothing NEEDS
    # it. The model-building, quantization and transformer tools, the backend shim and sample models are never
    # imported by `import onnxruntime` or an InferenceSession.
    "onnxruntime": (
        "onnxruntime/capi/libonnxruntime.so*",
        "onnxruntime/tools",
        "onnxruntime/quantization",
        "onnxruntime/transformers",
        "onnxruntime/backend",
        "onnxruntime/datasets",
    ),
    # Link-time static libraries, the PyInstaller hook and numpy's own test extension modules. (numpy.f2py stays:
    # numpy lists it among its attributes, and code that walks them, unpickling for one, imports it.)
    "numpy": (
        "numpy/_pyinstaller",
        "numpy/conftest.py",
        "numpy/_core/lib",
        "numpy/random/lib",
        "numpy/_core/_simd.*",
        "numpy/_core/_*_tests.*",
    ),
}
# Distributions a package's wheel requires only for the parts stripped above: dropped from a layer unless the layer
# declares them or another distribution it keeps requires them.
TOOLING_DEPENDENCIES: dict[str, tuple[str, ...]] = {
    "onnxruntime": ("flatbuffers", "packaging", "protobuf"),
}


@functools.cache
def find_python(version: str = PYTHON_VERSION) -> str | None:
    """A CPython interpreter of the Lambda runtime's version on this host, or None: `LOOPML_LAMBDA_PYTHON` if set,
    this interpreter, `python3.12` on PATH, then pyenv's installs."""
    tag = "cpython-" + version.replace(".", "")
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = [
        os.environ.get(LAMBDA_PYTHON_ENV),
        sys.executable,
        shutil.which(f"python{version}"),
        *(str(path) for path in sorted(pyenv.glob(f"{version}.*/bin/python{version}"), reverse=True)),
    ]
    for candidate in candidates:
        if not candidate:
            continue
        try:
            probe = subprocess.run(
                [candidate, "-c", "import sys; print(sys.implementation.cache_tag)"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except OSError:
            continue
        if probe.returncode == 0 and probe.stdout.strip() == tag:
            return candidate
    return None


def canonical_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def without_extras(requirement: str) -> str:
    """pip rejects extras in constraints files."""
    return re.sub(r"\[[^\]]*\]", "", requirement)


def base_layer() -> LayerSpec:
    (spec,) = (spec for spec in LAYERS.values() if spec.ships_core_package)
    return spec


def _core_package_dir(spec: LayerSpec) -> Path:
    return LAYERS_DIR / spec.key.value / CORE_PACKAGE


def layer_source_dir(spec: LayerSpec) -> Path:
    """The asset's source directory; only the core layer reads from it, the others are pure pip output."""
    return LAYERS_DIR / spec.key.value if spec.ships_core_package else LAYERS_DIR


def _copy_core_package(spec: LayerSpec, site: Path) -> None:
    # Replaced, never updated in place: earlier bundles in cdk.out may hard-link to the old files.
    shutil.rmtree(site / CORE_PACKAGE, ignore_errors=True)
    shutil.copytree(
        _core_package_dir(spec), site / CORE_PACKAGE, ignore=shutil.ignore_patterns(*STRIPPED_DIRS, "*.pyc")
    )


def _tree_files(root: Path) -> list[Path]:
    return sorted(
        path
        for path in root.rglob("*")
        if path.is_file() and not (STRIPPED_DIRS & set(path.relative_to(root).parts)) and path.suffix != ".pyc"
    )


def requirements_hash(key: Layer) -> str:
    """Changes exactly when pip's part of the layer would: its pins, every layer's pins, the build rules."""
    spec, base = LAYERS[key], base_layer()
    inputs: dict[str, Any] = {
        "bundler": BUNDLER_VERSION,
        "python": PYTHON_VERSION,
        "platforms": PLATFORMS,
        "requirements": spec.requirements,
        "constraints": _declared_constraints(),
        "base": None if spec is base else base.requirements,
        "runtime_provided": sorted(RUNTIME_PROVIDED),
        "package_strips": PACKAGE_STRIPS,
        "tooling_dependencies": TOOLING_DEPENDENCIES,
        "bytecode": bytecode_tag(),
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def layer_hash(key: Layer) -> str:
    """Changes exactly when the layer's content would: `requirements_hash`, plus the core package's source."""
    spec = LAYERS[key]
    if not spec.ships_core_package:
        return requirements_hash(key)
    digest = hashlib.sha256(requirements_hash(key).encode())
    package = _core_package_dir(spec)
    for path in _tree_files(package):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _declared_constraints() -> list[str]:
    return sorted({without_extras(req) for spec in LAYERS.values() for req in spec.requirements})


def installed_distributions(site: Path) -> dict[str, str]:
    """Canonical name -> version of every distribution pip installed into `site`."""
    found: dict[str, str] = {}
    for dist_info in site.glob("*.dist-info"):
        fields: dict[str, str] = {}
        for line in (dist_info / "METADATA").read_text(encoding="utf-8", errors="replace").splitlines():
            if not line:
                break
            name, _, value = line.partition(": ")
            fields.setdefault(name, value)
        found[canonical_name(fields["Name"])] = fields["Version"]
    return found


def remove_distributions(site: Path, names: Iterable[str]) -> list[str]:
    """Deletes the files pip recorded for each named distribution; returns the names that were present."""
    wanted = {canonical_name(name) for name in names}
    removed: list[str] = []
    for dist_info in sorted(site.glob("*.dist-info")):
        name = canonical_name(dist_info.name.removesuffix(".dist-info").rsplit("-", 1)[0])
        if name not in wanted:
            continue
        with (dist_info / "RECORD").open(newline="") as record:
            for row in csv.reader(record):
                target = (site / row[0]).resolve()
                if target.is_relative_to(site.resolve()) and target.is_file():
                    target.unlink()
        shutil.rmtree(dist_info, ignore_errors=True)
        removed.append(name)
    _remove_empty_dirs(site)
    return removed


def strip_tree(site: Path) -> None:
    for path in sorted(site.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_dir() and path.name in STRIPPED_DIRS:
            shutil.rmtree(path)
        elif path.is_file() and path.name.endswith(STRIPPED_SUFFIXES):
            path.unlink()
    shutil.rmtree(site / "bin", ignore_errors=True)  # console scripts with the build host's shebang
    _remove_empty_dirs(site)


def elf_dynamic(path: Path) -> tuple[str | None, list[str]] | None:
    """(SONAME, NEEDED sonames) of a 64-bit little-endian ELF file, or None if it is not one.

    Read from the dynamic segment, as the loader does, so building needs neither readelf nor the target platform.
    """
    data = path.read_bytes()
    if data[:6] != b"\x7fELF\x02\x01":
        return None
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    loads: list[tuple[int, int, int]] = []  # (vaddr, file offset, file size)
    dynamic: tuple[int, int] | None = None
    for index in range(phnum):
        p_type, _flags, offset, vaddr, _paddr, filesz = struct.unpack_from("<IIQQQQ", data, phoff + index * phentsize)
        if p_type == 1:  # PT_LOAD
            loads.append((vaddr, offset, filesz))
        elif p_type == 2:  # PT_DYNAMIC
            dynamic = (offset, filesz)
    if dynamic is None:
        return None
    entries: list[tuple[int, int]] = []
    for position in range(dynamic[0], dynamic[0] + dynamic[1], 16):
        tag, value = struct.unpack_from("<qQ", data, position)
        if tag == 0:  # DT_NULL
            break
        entries.append((tag, value))
    strtab_vaddr = next(value for tag, value in entries if tag == 5)  # DT_STRTAB
    strtab = next(
        offset + strtab_vaddr - vaddr for vaddr, offset, size in loads if vaddr <= strtab_vaddr < vaddr + size
    )

    def string(at: int) -> str:
        return data[strtab + at : data.index(b"\0", strtab + at)].decode()

    soname = next((string(value) for tag, value in entries if tag == 14), None)  # DT_SONAME
    return soname, [string(value) for tag, value in entries if tag == 1]  # DT_NEEDED


def shared_objects(root: Path) -> dict[Path, tuple[str | None, list[str]]]:
    """Every ELF shared object under `root` (extension modules included) -> (SONAME, NEEDED)."""
    found = {}
    for path in sorted(root.rglob("*.so*")):
        if path.is_file() and not path.is_symlink() and (dynamic := elf_dynamic(path)) is not None:
            found[path] = dynamic
    return found


def drop_duplicate_libraries(root: Path) -> list[Path]:
    """Wheels cannot hold symlinks, so `libx.so`, `libx.so.N` and `libx.so.N.M` arrive as three copies of one
    library. The loader only ever asks for its SONAME (`libx.so.N`); the other names exist for linking against it."""
    dropped = []
    for path, (soname, _needed) in shared_objects(root).items():
        if soname and path.name != soname and (path.parent / soname).is_file():
            path.unlink()
            dropped.append(path)
    return dropped


def strip_package(site: Path, package: str, patterns: Iterable[str]) -> None:
    """Removes what `patterns` name and the duplicate library copies from one package, keeping every library that
    a kept module needs; raises if a pattern would remove one."""
    root = site / package
    if not root.is_dir():
        return
    shipped = {path.name for path in shared_objects(root)}
    for pattern in patterns:
        for path in sorted(site.glob(pattern)):
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    drop_duplicate_libraries(root)
    present = {path.name for path in root.rglob("*") if path.is_file()}
    missing = sorted(
        f"{path.relative_to(site)} needs {name}"
        for path, (_soname, needed) in shared_objects(root).items()
        for name in needed
        if name in shipped and name not in present
    )
    if missing:
        raise RuntimeError(f"stripping {package} removed libraries its modules load: {'; '.join(missing)}")
    _remove_empty_dirs(root)


def requirements_of(site: Path) -> dict[str, set[str]]:
    """Canonical name -> the canonical names it requires (extras left out) of every distribution in `site`."""
    required: dict[str, set[str]] = {}
    for dist_info in site.glob("*.dist-info"):
        name, needs = "", set()
        for line in (dist_info / "METADATA").read_text(encoding="utf-8", errors="replace").splitlines():
            if not line:
                break
            key, _, value = line.partition(": ")
            if key == "Name":
                name = canonical_name(value)
            elif key == "Requires-Dist" and "extra ==" not in value:
                match = re.match(r"[A-Za-z0-9._-]+", value.strip())
                if match:
                    needs.add(canonical_name(match.group()))
        required[name] = needs
    return required


def unused_tooling_dependencies(site: Path, declared: Iterable[str]) -> list[str]:
    """What `TOOLING_DEPENDENCIES` names that this layer neither declares nor needs for anything it keeps."""
    required = requirements_of(site)
    keep = {canonical_name(re.split(r"[\[=<>!~; ]", requirement, maxsplit=1)[0]) for requirement in declared}
    unused: list[str] = []
    for package, tooling in TOOLING_DEPENDENCIES.items():
        if canonical_name(package) not in required:
            continue
        for dependency in map(canonical_name, tooling):
            needed_by = {name for name, needs in required.items() if dependency in needs} - {canonical_name(package)}
            if dependency in required and dependency not in keep and not needed_by:
                unused.append(dependency)
    return sorted(unused)


def bytecode_tag() -> str | None:
    """The cache tag of the `.pyc` the layers ship (`cpython-312`), or None when no interpreter can compile them."""
    return None if find_python() is None else "cpython-" + PYTHON_VERSION.replace(".", "")


def compile_bytecode(root: Path, site: Path, python: str, log: Callable[[str], None]) -> None:
    """Compiles every module under `root` (inside a layer's `site`) to unchecked-hash `.pyc` for the runtime's Python,
    each naming its source by where Lambda puts it (/opt/python/...), so tracebacks show the right path."""
    done = subprocess.run(
        [
            python,
            "-m",
            "compileall",
            "-q",
            "-j",
            "0",
            "--invalidation-mode",
            "unchecked-hash",
            "-s",
            str(site),
            "-p",
            LAMBDA_SITE,
            str(root),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        # A file that does not compile (a template, a Python 2 script some wheel ships) cannot be imported anyway.
        failed = [line for line in done.stdout.splitlines() if line.startswith("***")]
        log(f"bytecode: {len(failed)} file(s) under {root.name} did not compile and ship as source only")


def _remove_empty_dirs(root: Path) -> None:
    for path in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def tree_size(root: Path) -> int:
    return sum(path.stat().st_size for path in root.rglob("*") if path.is_file() and not path.is_symlink())


def copy_tree(source: Path, destination: Path) -> None:
    """Hard-links where possible: layers are hundreds of MB and CDK only reads (zips) its copy."""

    def link_or_copy(src: str, dst: str) -> Any:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
        return dst

    shutil.copytree(source, destination, copy_function=link_or_copy, dirs_exist_ok=True)


class LayerBuilder:
    """Builds layers into `build_root/<key>`; `build_root/<key>.json` records the hash and what pip resolved."""

    def __init__(
        self,
        build_root: Path = BUILD_ROOT,
        pip: Sequence[str] = (sys.executable, "-m", "pip"),
        log: Callable[[str], None] = lambda message: print(message, file=sys.stderr),
    ) -> None:
        self.build_root = build_root
        self.pip = tuple(pip)
        self.log = log
        missing_base = [f.key for f in FUNCTIONS.values() if f.layers and base_layer().key not in f.layers]
        if missing_base:
            # Dropping the base layer's packages from the others is only safe if every function has the base layer.
            raise ValueError(f"functions without the {base_layer().key} layer: {missing_base}")

    def layer_dir(self, key: Layer) -> Path:
        return self.build_root / key.value

    def _record_path(self, key: Layer) -> Path:
        return self.build_root / f"{key.value}.json"

    def record(self, key: Layer) -> dict[str, Any] | None:
        try:
            loaded: dict[str, Any] = json.loads(self._record_path(key).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return loaded

    def _write_record(self, key: Layer, record: dict[str, Any]) -> None:
        self._record_path(key).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")

    def is_current(self, key: Layer) -> bool:
        record = self.record(key)
        return record is not None and record.get("hash") == layer_hash(key) and self.layer_dir(key).is_dir()

    def build(self, key: Layer) -> Path:
        """The layer's directory (containing `python/`), rebuilt only when its hash changed."""
        if self.is_current(key):
            self.log(f"layer {key}: up to date ({self.layer_dir(key)})")
        elif self._only_core_package_changed(key):
            # The common case while developing: no need to run pip again.
            site = self.layer_dir(key) / "python"
            _copy_core_package(LAYERS[key], site)
            self._compile(site / CORE_PACKAGE, site)
            self._write_record(key, {**(self.record(key) or {}), "hash": layer_hash(key)})
            self.log(f"layer {key}: refreshed {CORE_PACKAGE} only")
        else:
            self._build_with_pip(key)
        return self.layer_dir(key)

    def _only_core_package_changed(self, key: Layer) -> bool:
        record = self.record(key)
        return (
            LAYERS[key].ships_core_package
            and record is not None
            and record.get("requirements_hash") == requirements_hash(key)
            and self.layer_dir(key).is_dir()
        )

    def _build_with_pip(self, key: Layer) -> None:
        spec, base = LAYERS[key], base_layer()
        base_resolved: dict[str, str] = {}
        if spec is not base:
            self.build(base.key)
            base_resolved = (self.record(base.key) or {})["resolved"]
        self.log(f"layer {key}: building with pip for {LAMBDA_RUNTIME} ({', '.join(PLATFORMS)})")
        self.build_root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f"{key.value}-", dir=self.build_root))
        try:
            site = staging / "python"
            constraints = [*_declared_constraints(), *(f"{name}=={version}" for name, version in base_resolved.items())]
            self._pip_install(site, spec.requirements, constraints, staging)
            resolved = installed_distributions(site)
            dropped = remove_distributions(site, RUNTIME_PROVIDED | set(base_resolved))
            unused = remove_distributions(site, unused_tooling_dependencies(site, spec.requirements))
            strip_tree(site)
            for package, patterns in PACKAGE_STRIPS.items():
                strip_package(site, package, patterns)
            if spec.ships_core_package:
                _copy_core_package(spec, site)
            bytecode = self._compile(site, site) and self._bytecode_fits(key, site)
            (staging / "constraints.txt").unlink()
            shutil.rmtree(self.layer_dir(key), ignore_errors=True)
            staging.rename(self.layer_dir(key))
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        shipped = bytecode_tag() if bytecode else None
        record = {"hash": layer_hash(key), "requirements_hash": requirements_hash(key), "resolved": resolved}
        self._write_record(key, {**record, "dropped": sorted(dropped), "unused": sorted(unused), "bytecode": shipped})
        self.log(
            f"layer {key}: {tree_size(self.layer_dir(key)) / 2**20:.1f} MiB, dropped {sorted(dropped)}, "
            f"unused {sorted(unused)}, bytecode {shipped or 'none'}"
        )

    def _compile(self, root: Path, site: Path) -> bool:
        python = find_python()
        if python is None:
            self.log(
                f"bytecode: no Python {PYTHON_VERSION} found (set {LAMBDA_PYTHON_ENV} to one); the layers ship "
                "source only and every cold start compiles what it imports"
            )
            return False
        compile_bytecode(root, site, python, self.log)
        return True

    def _bytecode_fits(self, key: Layer, site: Path) -> bool:
        """Whether every function with this layer stays under Lambda's unzipped limit with its bytecode, beside its
        other layers as currently built (the base layer, built first, always is). If not, this layer's bytecode goes:
        a function that deploys matters more than its cold start. The base layer, small and in every function, always
        keeps its bytecode."""
        if LAYERS[key].ships_core_package:
            return True
        size = tree_size(site)
        for spec in FUNCTIONS.values():
            if key not in spec.layers:
                continue
            others = [self.layer_dir(other) for other in spec.layers if other != key and self.is_current(other)]
            total = size + tree_size(spec.code_dir) + sum(tree_size(path) for path in others if path.is_dir())
            if total > LAMBDA_UNZIPPED_LIMIT:
                for cache in sorted(site.rglob("__pycache__")):
                    shutil.rmtree(cache, ignore_errors=True)
                self.log(
                    f"bytecode: left out of layer {key}: {spec.key} would be {total / 2**20:.1f} MiB with it, over "
                    f"Lambda's {LAMBDA_UNZIPPED_LIMIT / 2**20:.0f} MiB"
                )
                return False
        return True

    def _pip_install(self, site: Path, requirements: Sequence[str], constraints: Sequence[str], staging: Path) -> None:
        constraints_file = staging / "constraints.txt"
        constraints_file.write_text("\n".join(constraints) + "\n")
        command = [
            *self.pip,
            "install",
            "--target",
            str(site),
            *(arg for platform in PLATFORMS for arg in ("--platform", platform)),
            "--implementation",
            "cp",
            "--python-version",
            PYTHON_VERSION,
            "--only-binary=:all:",
            "--no-compile",
            "--no-input",
            "--disable-pip-version-check",
            "--progress-bar",
            "off",
            # pip's conflict check looks at the environment running pip, not at the layer being built.
            "--no-warn-conflicts",
            "--constraint",
            str(constraints_file),
            *requirements,
        ]
        subprocess.run(command, check=True, stdout=sys.stderr)


@jsii.implements(ILocalBundling)
class PipLayerBundling:
    """CDK local bundling of one layer: build it (or reuse the cached build) and copy it into CDK's output dir."""

    def __init__(self, key: Layer, builder: LayerBuilder | None = None) -> None:
        self.key = key
        self.builder = builder or LayerBuilder()

    def try_bundle(self, output_dir: str, *, image: DockerImage, **_options: Any) -> bool:
        # Never fall back to Docker (there may be none); a failed pip build raises instead.
        copy_tree(self.builder.build(self.key), Path(output_dir))
        return True
