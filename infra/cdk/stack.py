"""LoopMLStack: combines the constructs; everything it deploys comes from `infra.declaration`."""

from __future__ import annotations

from typing import Any

from aws_cdk import Aws, CfnOutput, Stack, Tags
from constructs import Construct

from infra.cdk.arns import Arns
from infra.cdk.constructs.api import InferenceApi
from infra.cdk.constructs.capture import CaptureDelivery
from infra.cdk.constructs.duties import Duties
from infra.cdk.constructs.functions import Functions
from infra.cdk.constructs.layers import Layers
from infra.cdk.constructs.monitoring import Monitoring
from infra.cdk.constructs.pipeline import BatchScoring, Pipeline
from infra.cdk.constructs.storage import Storage
from infra.cdk.layer_bundling import LayerBuilder
from infra.cdk.settings import DeploymentSettings
from infra.declaration import API, CAPTURE_DELIVERY, DUTIES, Names


class LoopMLStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: DeploymentSettings,
        layer_builder: LayerBuilder | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, description=f"LoopML serverless MLOps ({settings.stage})", **kwargs)
        Tags.of(self).add("loopml:stage", settings.stage)
        names = Names(Aws.ACCOUNT_ID, Aws.REGION)
        arns = Arns(self, names)

        self.storage = Storage(self, "Storage", names=names)
        self.layers = Layers(self, "Layers", builder=layer_builder)
        self.functions = Functions(
            self, "Functions", names=names, arns=arns, layers=self.layers.versions, log_retention=settings.log_retention
        )
        self.pipeline = Pipeline(
            self, "Pipeline", names=names, functions=self.functions.functions, log_retention=settings.log_retention
        )
        self.batch = BatchScoring(
            self,
            "Batch",
            names=names,
            functions=self.functions.functions,
            log_retention=settings.log_retention,
            artifact_bucket_arn=arns.bucket(names.artifact_bucket),
        )
        self.api = InferenceApi(
            self, "Api", function=self.functions.functions[API.function], log_retention=settings.log_retention
        )
        self.capture = CaptureDelivery(
            self,
            "Capture",
            spec=CAPTURE_DELIVERY,
            bucket=self.storage.artifact_bucket,
            log_group=self.functions.log_groups[CAPTURE_DELIVERY.function],
        )
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            names=names,
            arns=arns,
            functions=self.functions.functions,
            state_machine=self.pipeline.state_machine,
            rest_api=self.api.rest_api,
            data_bucket=self.storage.data_bucket,
            alert_email=settings.alert_email,
        )
        self.duties = Duties(self, "Duties", names=names, arns=arns, rest_api=self.api.rest_api)
        self._build_outputs()

    def _build_outputs(self) -> None:
        outputs = {
            "ApiUrl": self.api.rest_api.url,
            "DataBucketName": self.storage.data_bucket.bucket_name,
            "ArtifactBucketName": self.storage.artifact_bucket.bucket_name,
            "AuditBucketName": self.storage.audit_bucket.bucket_name,
            "RegistryTableName": self.storage.registry_table.table_name,
            "StateMachineArn": self.pipeline.state_machine.state_machine_arn,
            "BatchStateMachineArn": self.batch.state_machine.state_machine_arn,
            "AlertTopicArn": self.monitoring.alert_topic.topic_arn,
            # What an administrator attaches to people: `aws iam attach-user-policy --policy-arn <ApproverPolicyArn>`.
            **{spec.output: self.duties.policies[key].managed_policy_arn for key, spec in DUTIES.items()},
        }
        for output_id, value in outputs.items():
            CfnOutput(self, output_id, value=value)
