"""Builds every Lambda layer for real and checks each function against Lambda's 250 MB unzipped limit.

Uses the same builder as CDK's local bundling (`infra.cdk.layer_bundling`), so the sizes are those of the deployed
layers; unchanged layers come from the `.build/layers` cache. Exits 1 if any function (its layers + its code) is over.

    python benchmarks/package_size.py [--no-zip]
    python benchmarks/package_size.py --cdk-out cdk.out     # after `make synth`: what CloudFormation would deploy

With `--cdk-out`, sizes are read from the synthesized assembly instead: each function's code asset plus the layer
assets its template resource references, exactly the directories CDK zips and uploads.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
import tempfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from infra.cdk.constructs.functions import CODE_EXCLUDES
from infra.cdk.layer_bundling import LayerBuilder
from infra.declaration import FUNCTIONS, LAYERS, Layer

# Lambda's quota on a function's unzipped code plus all its layers: 262,144,000 bytes, i.e. 250 MiB.
UNZIPPED_LIMIT = 262_144_000
MIB = 2**20


def files(root: Path, excludes: tuple[str, ...] = ()) -> list[Path]:
    return sorted(
        path
        for path in root.rglob("*")
        if path.is_file()
        and not any(fnmatch.fnmatch(part, pattern) for part in path.relative_to(root).parts for pattern in excludes)
    )


def unzipped_size(root: Path, excludes: tuple[str, ...] = ()) -> int:
    return sum(path.stat().st_size for path in files(root, excludes))


def zipped_size(root: Path, excludes: tuple[str, ...] = ()) -> int:
    with tempfile.TemporaryFile() as handle:
        with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
            for path in files(root, excludes):
                archive.write(path, path.relative_to(root).as_posix())
        return handle.tell()


def mib(size: int | None) -> str:
    return "-" if size is None else f"{size / MIB:8.1f}"


def from_assembly(out: Path) -> int:
    """Unzipped size of every function in a synthesized cloud assembly: its code asset plus its layers' assets."""
    templates = sorted(out.glob("*.template.json"))
    if not templates:
        print(f"no template in {out}; run `make synth` first", file=sys.stderr)
        return 2
    resources: dict[str, dict] = json.loads(templates[0].read_text())["Resources"]
    assets = {
        logical: out / resource["Metadata"]["aws:asset:path"]
        for logical, resource in resources.items()
        if "aws:asset:path" in resource.get("Metadata", {})
    }
    print(f"Functions in {templates[0]} (MiB; limit {UNZIPPED_LIMIT / MIB:.0f} MiB unzipped, layers + code)")
    print(f"{'function':<26}{'code':>9}{'layers':>9}{'total':>9}{'headroom':>10}  verdict")
    over = []
    for logical, resource in sorted(resources.items()):
        if resource["Type"] != "AWS::Lambda::Function" or logical not in assets:
            continue
        code = unzipped_size(assets[logical])
        layers = sum(unzipped_size(assets[ref["Ref"]]) for ref in resource["Properties"].get("Layers", []))
        total = code + layers
        name = resource["Properties"].get("FunctionName", logical)
        verdict = "ok" if total <= UNZIPPED_LIMIT else "OVER LIMIT"
        if total > UNZIPPED_LIMIT:
            over.append(str(name))
        print(f"{name!s:<26}{mib(code):>9}{mib(layers):>9}{mib(total):>9}{mib(UNZIPPED_LIMIT - total):>10}  {verdict}")
    if over:
        print(f"\nover Lambda's unzipped limit: {', '.join(over)}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-zip", action="store_true", help="skip measuring zipped sizes (slow for big layers)")
    parser.add_argument("--cdk-out", type=Path, help="measure a synthesized cloud assembly (e.g. cdk.out) instead")
    args = parser.parse_args(argv)
    if args.cdk_out is not None:
        return from_assembly(args.cdk_out)

    builder = LayerBuilder()
    layer_sizes: dict[Layer, tuple[int, int | None]] = {}
    for key in LAYERS:
        directory = builder.build(key)
        layer_sizes[key] = (unzipped_size(directory), None if args.no_zip else zipped_size(directory))

    print("\nLayers (MiB; bytecode: the .pyc shipped for the runtime's Python, if any)")
    print(f"{'layer':<12}{'unzipped':>10}{'zipped':>10}  bytecode")
    for key, (unzipped, zipped) in layer_sizes.items():
        bytecode = (builder.record(key) or {}).get("bytecode") or "none"
        print(f"{key.value:<12}{mib(unzipped):>10}{mib(zipped):>10}  {bytecode}")

    print(f"\nFunctions (MiB; limit {UNZIPPED_LIMIT / MIB:.0f} MiB = {UNZIPPED_LIMIT:,} bytes unzipped, layers + code)")
    print(f"{'function':<17}{'layers':<18}{'code':>8}{'total':>9}{'headroom':>10}{'zipped':>9}  verdict")
    over = []
    for spec in FUNCTIONS.values():
        code = unzipped_size(spec.code_dir, CODE_EXCLUDES)
        code_zipped = None if args.no_zip else zipped_size(spec.code_dir, CODE_EXCLUDES)
        total = code + sum(layer_sizes[key][0] for key in spec.layers)
        zipped = None if code_zipped is None else code_zipped + sum(layer_sizes[key][1] or 0 for key in spec.layers)
        verdict = "ok" if total <= UNZIPPED_LIMIT else "OVER LIMIT"
        if total > UNZIPPED_LIMIT:
            over.append(spec.key)
        layers = "+".join(key.value for key in spec.layers)
        print(
            f"{spec.key:<17}{layers:<18}{code / 1024:7.1f}K{mib(total):>9}"
            f"{mib(UNZIPPED_LIMIT - total):>10}{mib(zipped):>9}  {verdict}"
        )
    if over:
        print(f"\nover Lambda's unzipped limit: {', '.join(over)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
