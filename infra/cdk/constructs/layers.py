"""One Lambda layer version per declared layer, bundled locally with pip (see `infra.cdk.layer_bundling`)."""

from __future__ import annotations

from aws_cdk import AssetHashType, BundlingOptions, RemovalPolicy
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.cdk.layer_bundling import LayerBuilder, PipLayerBundling, layer_hash, layer_source_dir
from infra.declaration import LAMBDA_RUNTIME, LAYERS, PREFIX, Layer, LayerSpec

RUNTIME = lambda_.Runtime(LAMBDA_RUNTIME, lambda_.RuntimeFamily.PYTHON)
ARCHITECTURE = lambda_.Architecture.X86_64  # the layers hold x86_64 manylinux wheels


class Layers(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, builder: LayerBuilder | None = None) -> None:
        super().__init__(scope, construct_id)
        self._builder = builder or LayerBuilder()
        self.versions: dict[Layer, lambda_.ILayerVersion] = {
            key: self._build_layer(spec) for key, spec in LAYERS.items()
        }

    def _build_layer(self, spec: LayerSpec) -> lambda_.LayerVersion:
        return lambda_.LayerVersion(
            self,
            spec.key.value.capitalize(),
            layer_version_name=f"{PREFIX}-{spec.key.value}",
            description=spec.description,
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
            code=self._build_code(spec),
            # Replaced versions are deleted once no function uses them; they are large.
            removal_policy=RemovalPolicy.DESTROY,
        )

    def _build_code(self, spec: LayerSpec) -> lambda_.Code:
        return lambda_.Code.from_asset(
            str(layer_source_dir(spec)),
            # The hash is known before bundling, so CDK skips bundling unchanged layers and, when bundling is
            # disabled (`aws:cdk:bundling-stacks`), the template still names the asset that would be deployed.
            asset_hash_type=AssetHashType.CUSTOM,
            asset_hash=layer_hash(spec.key),
            bundling=BundlingOptions(
                # Required by the API; never used, as the local bundler always bundles or raises.
                image=RUNTIME.bundling_image,
                local=PipLayerBundling(spec.key, self._builder),
            ),
        )
