"""The data, artifact and audit buckets, their access-log bucket, and the registry table."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.declaration import (
    ABORT_INCOMPLETE_UPLOADS_DAYS,
    AUDIT_LOCK,
    CAPTURE_DELIVERY,
    AuditLockSpec,
    Names,
    ObjectLockMode,
    artifact_expiry,
    audit_bucket_policy_statements,
)


class Storage(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, names: Names) -> None:
        super().__init__(scope, construct_id)
        self.access_logs_bucket = self._build_access_logs_bucket()
        self.data_bucket = self._build_bucket("DataBucket", names.data_bucket, log_prefix="data/")
        self.artifact_bucket = self._build_bucket(
            "ArtifactBucket", names.artifact_bucket, log_prefix="artifacts/", expiring=self._capture_retention()
        )
        self.audit_bucket = self._build_audit_bucket(names.audit_bucket, AUDIT_LOCK)
        self.registry_table = self._build_registry_table(names.registry_table)

    def _build_access_logs_bucket(self) -> s3.Bucket:
        return s3.Bucket(
            self,
            "AccessLogsBucket",
            # Server access logs can only be delivered to SSE-S3 buckets.
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(365))],
            removal_policy=RemovalPolicy.RETAIN,
        )

    @staticmethod
    def _capture_retention() -> list[s3.LifecycleRule]:
        """What expires in the artifact bucket (`artifact_expiry`): captured traffic by retention class, records
        Firehose could not partition, labels that never met their captures. Nothing else ever expires."""
        return [
            s3.LifecycleRule(
                id=f"expire-{prefix.rstrip('/').replace('/', '-')}",
                prefix=prefix,
                expiration=Duration.days(days),
                noncurrent_version_expiration=Duration.days(1),
            )
            for prefix, days in artifact_expiry(CAPTURE_DELIVERY)
        ]

    def _build_bucket(
        self, construct_id: str, bucket_name: str, *, log_prefix: str, expiring: list[s3.LifecycleRule] | None = None
    ) -> s3.Bucket:
        return s3.Bucket(
            self,
            construct_id,
            bucket_name=bucket_name,
            # Every dataset and model version stays addressable by its S3 version id; nothing is ever deleted, but
            # for captured traffic, kept as long as its model's contract says.
            versioned=True,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.access_logs_bucket,
            server_access_logs_prefix=log_prefix,
            lifecycle_rules=[
                s3.LifecycleRule(abort_incomplete_multipart_upload_after=Duration.days(ABORT_INCOMPLETE_UPLOADS_DAYS)),
                *(expiring or []),
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )

    def _build_audit_bucket(self, bucket_name: str, lock: AuditLockSpec) -> s3.Bucket:
        """The audit chain's checkpoints: versioned, every version locked for the declared retention, and a policy
        that denies every principal the deletes (and lifecycle rules) that could hide a checkpoint from a listing."""
        retention = Duration.days(lock.retention_days)
        bucket = s3.Bucket(
            self,
            "AuditBucket",
            bucket_name=bucket_name,
            versioned=True,
            object_lock_enabled=True,
            object_lock_default_retention=(
                s3.ObjectLockRetention.compliance(retention)
                if lock.mode is ObjectLockMode.COMPLIANCE
                else s3.ObjectLockRetention.governance(retention)
            ),
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.access_logs_bucket,
            server_access_logs_prefix="audit/",
            removal_policy=RemovalPolicy.RETAIN,
        )
        for statement in audit_bucket_policy_statements(bucket.bucket_arn):
            bucket.add_to_resource_policy(iam.PolicyStatement.from_json(statement))
        return bucket

    def _build_registry_table(self, table_name: str) -> dynamodb.Table:
        return dynamodb.Table(
            self,
            "RegistryTable",
            table_name=table_name,
            partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            removal_policy=RemovalPolicy.RETAIN,
        )
