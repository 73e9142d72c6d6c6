"""Captured traffic from the predict function's log group to S3: a subscription filter into a Firehose stream."""

from __future__ import annotations

from aws_cdk import Aws
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.cdk import nag
from infra.declaration import CaptureDeliverySpec, capture_destination


class CaptureDelivery(Construct):
    """The delivery declared by `spec`: the stream and its role, and the filter and its role.

    The stream's destination (processors, partitioning, buffering, compression, prefixes) is the declaration's
    `capture_destination`, the very configuration the local cloud creates on moto.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        spec: CaptureDeliverySpec,
        bucket: s3.IBucket,
        log_group: logs.ILogGroup,
    ) -> None:
        super().__init__(scope, construct_id)
        self.delivery_role = self._build_delivery_role(spec, bucket)
        self.stream = firehose.CfnDeliveryStream(
            self,
            "Stream",
            delivery_stream_name=spec.physical_name(),
            delivery_stream_type="DirectPut",
            delivery_stream_encryption_configuration_input=firehose.CfnDeliveryStream.DeliveryStreamEncryptionConfigurationInputProperty(
                key_type="AWS_OWNED_CMK"
            ),
        )
        self.stream.add_property_override(
            "ExtendedS3DestinationConfiguration",
            capture_destination(spec, bucket.bucket_arn, self.delivery_role.role_arn),
        )
        self.stream.node.add_dependency(self.delivery_role)
        self.subscription_role = self._build_subscription_role()
        self.subscription = logs.CfnSubscriptionFilter(
            self,
            "Subscription",
            filter_name=spec.physical_name(),
            log_group_name=log_group.log_group_name,
            filter_pattern=spec.filter_pattern,
            destination_arn=self.stream.attr_arn,
            role_arn=self.subscription_role.role_arn,
        )
        # CloudWatch Logs tests the role when the filter is created: its policy must exist by then.
        self.subscription.node.add_dependency(self.subscription_role)

    def _build_delivery_role(self, spec: CaptureDeliverySpec, bucket: s3.IBucket) -> iam.Role:
        role = iam.Role(
            self,
            "DeliveryRole",
            assumed_by=iam.ServicePrincipal(
                "firehose.amazonaws.com", conditions={"StringEquals": {"sts:ExternalId": Aws.ACCOUNT_ID}}
            ),
            description=f"{spec.physical_name()}: writes captured traffic batches to the artifact bucket",
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "s3:AbortMultipartUpload",
                    "s3:GetBucketLocation",
                    "s3:ListBucket",
                    "s3:ListBucketMultipartUploads",
                ],
                resources=[bucket.bucket_arn],
            )
        )
        objects = [bucket.arn_for_objects(f"{spec.prefix}*"), bucket.arn_for_objects(f"{spec.error_prefix}*")]
        role.add_to_policy(iam.PolicyStatement(actions=["s3:PutObject", "s3:AbortMultipartUpload"], resources=objects))
        for resource in objects:
            nag.acknowledge(
                role,
                f"AwsSolutions-IAM5[Resource::{nag.finding_resource(role, resource)}]",
                "Firehose names each batch at delivery time under the capture prefixes; the wildcard stops at them.",
            )
        return role

    def _build_subscription_role(self) -> iam.Role:
        role = iam.Role(
            self,
            "SubscriptionRole",
            assumed_by=iam.ServicePrincipal(
                "logs.amazonaws.com",
                conditions={"StringLike": {"aws:SourceArn": f"arn:aws:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:*"}},
            ),
            description="CloudWatch Logs: sends the predict function's capture lines to the capture stream",
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["firehose:PutRecord", "firehose:PutRecordBatch"], resources=[self.stream.attr_arn]
            )
        )
        return role
