"""The declared duties (`DUTIES`), each one customer-managed IAM policy for people and their CI jobs.

The stack emits policies, not roles: who holds a duty — IAM users, groups, roles, IAM Identity Center permission
sets — is the account administrator's choice, and a policy attaches to any of them. A role would also need a trust
policy naming who may assume it, which the stack cannot know.
"""

from __future__ import annotations

from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra.cdk import nag
from infra.cdk.arns import Arns
from infra.cdk.constructs.functions import (
    AUDIT_CHECKPOINT,
    BUCKET_READ,
    EVENTS_PUT,
    OBJECT_READ,
    PIPELINE_DESCRIBE,
    PIPELINE_START,
    TABLE_READ,
    allow,
    allow_under_partitions,
    pascal_case,
)
from infra.declaration import API, DUTIES, DutySpec, Names, audit_checkpoint_objects

# An upload is a PutObject (also in parts: CreateMultipartUpload, UploadPart and CompleteMultipartUpload are
# authorized as s3:PutObject), with tags (`loopml-id-column` on a batch file) and the abort of a failed multipart
# upload; the uploader then reads the outcome tags LoopML puts on the very object version.
OBJECT_UPLOAD = ("s3:PutObject", "s3:PutObjectTagging", "s3:AbortMultipartUpload")
OUTCOME_TAGS = ("s3:GetObjectTagging", "s3:GetObjectVersionTagging")
# What a person's registry commands do, each in one transaction with its audit records: put an alias, a version's
# status or a deployment; delete an alias or end a deployment; check the version an alias names (ConditionCheck).
TABLE_COMMANDS = ("dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:ConditionCheckItem")
# The callback of a task waiting on `.waitForTaskToken`; the token, not the resource, says which execution.
TASK_RESPONSE = ("states:SendTaskSuccess", "states:SendTaskFailure")
API_INVOKE = ("execute-api:Invoke",)
LIST_PREFIX = "s3:prefix"


def pascal_duty(key: str) -> str:
    return pascal_case(key.replace("-", "_"))


class Duties(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, names: Names, arns: Arns, rest_api: apigw.RestApi
    ) -> None:
        super().__init__(scope, construct_id)
        self._names, self._arns, self._rest_api = names, arns, rest_api
        self.policies: dict[str, iam.ManagedPolicy] = {key: self._build_policy(spec) for key, spec in DUTIES.items()}

    def _build_policy(self, spec: DutySpec) -> iam.ManagedPolicy:
        policy = iam.ManagedPolicy(
            self,
            pascal_duty(spec.key),
            managed_policy_name=spec.policy_name(),
            description=spec.description,
            statements=self._statements(spec),
        )
        self._acknowledge_findings(policy, spec)
        return policy

    def _statements(self, spec: DutySpec) -> list[iam.PolicyStatement]:
        names, arns = self._names, self._arns
        data = arns.bucket(names.data_bucket)
        statements: list[iam.PolicyStatement] = []
        if spec.uploads:
            uploads = [f"{data}/{pattern}" for pattern in spec.uploads]
            statements += [
                iam.PolicyStatement(actions=list(OBJECT_UPLOAD), resources=uploads),
                iam.PolicyStatement(actions=list(OUTCOME_TAGS), resources=uploads),
            ]
        if spec.data_reads:
            statements.append(
                iam.PolicyStatement(actions=list(OBJECT_READ), resources=[f"{data}/{p}" for p in spec.data_reads])
            )
        if spec.uploads or spec.data_reads:
            statements.append(self._list_under(data, (*spec.uploads, *spec.data_reads)))
        if spec.artifact_reads:
            artifacts = arns.bucket(names.artifact_bucket)
            statements += [
                iam.PolicyStatement(
                    actions=list(OBJECT_READ), resources=[f"{artifacts}/{p}" for p in spec.artifact_reads]
                ),
                self._list_under(artifacts, spec.artifact_reads),
            ]
        if spec.read_everything:
            for bucket_name in (names.data_bucket, names.artifact_bucket, names.audit_bucket):
                statements += [
                    allow(BUCKET_READ, arns.bucket(bucket_name)),
                    allow(OBJECT_READ, arns.objects(bucket_name)),
                ]
        if spec.registry_read:
            statements.append(allow(TABLE_READ, arns.registry_table()))
        if spec.registry_writes:
            statements += [
                allow_under_partitions(TABLE_COMMANDS, arns.registry_table(), spec.registry_writes),
                allow(AUDIT_CHECKPOINT, self._audit_checkpoints()),
            ]
        if spec.start_pipeline:
            statements += [allow(PIPELINE_START, arns.state_machine()), allow(PIPELINE_DESCRIBE, arns.executions())]
        if spec.answer_approvals:
            statements.append(allow(TASK_RESPONSE, arns.state_machine()))
        if spec.publish_events:
            statements.append(allow(EVENTS_PUT, arns.event_bus()))
        if spec.invoke_api:
            statements.append(allow(API_INVOKE, self._api_routes()))
        return statements

    @staticmethod
    def _list_under(bucket_arn: str, patterns: tuple[str, ...]) -> iam.PolicyStatement:
        """ListBucket only for listings whose prefix lies under `patterns`: the keys of others stay unseen."""
        return iam.PolicyStatement(
            actions=list(BUCKET_READ),
            resources=[bucket_arn],
            conditions={"StringLike": {LIST_PREFIX: list(patterns)}},
        )

    def _audit_checkpoints(self) -> str:
        return audit_checkpoint_objects(self._arns.bucket(self._names.audit_bucket))

    def _api_routes(self) -> str:
        """Every method and path of the inference API's declared stage, and of no other API or stage."""
        return self._rest_api.arn_for_execute_api(method="*", path="/*", stage=API.stage)

    def _acknowledge_findings(self, policy: iam.ManagedPolicy, spec: DutySpec) -> None:
        names, arns = self._names, self._arns
        data, artifacts = arns.bucket(names.data_bucket), arns.bucket(names.artifact_bucket)
        scoped = [
            *(f"{data}/{pattern}" for pattern in (*spec.uploads, *spec.data_reads)),
            *(f"{artifacts}/{pattern}" for pattern in spec.artifact_reads),
        ]
        for resource in scoped:
            nag.acknowledge(
                policy,
                f"AwsSolutions-IAM5[Resource::{nag.finding_resource(policy, resource)}]",
                "Object keys under one declared prefix of one bucket, named per dataset, model and file; the actions "
                "are the exact object calls the duty needs and never include deletes.",
            )
        if spec.read_everything:
            for bucket_name in (names.data_bucket, names.artifact_bucket, names.audit_bucket):
                nag.acknowledge(
                    policy,
                    f"AwsSolutions-IAM5[Resource::{nag.finding_resource(policy, arns.objects(bucket_name))}]",
                    "The operator reads every object of LoopML's buckets to investigate; read actions only, on these "
                    "buckets only.",
                )
        if spec.registry_writes:
            nag.acknowledge(
                policy,
                f"AwsSolutions-IAM5[Resource::{nag.finding_resource(policy, self._audit_checkpoints())}]",
                "Checkpoint keys name each audit record's sequence number and hash; PutObject under the checkpoint "
                "prefix only, and the bucket's Object Lock keeps every version.",
            )
        if spec.start_pipeline:
            nag.acknowledge(
                policy,
                f"AwsSolutions-IAM5[Resource::{nag.finding_resource(policy, arns.executions())}]",
                "Execution names are chosen per run; DescribeExecution is limited to executions of the pipeline.",
            )
        if spec.invoke_api:
            nag.acknowledge(
                policy,
                f"AwsSolutions-IAM5[Resource::{nag.finding_resource(policy, self._api_routes())}]",
                "Every declared route of the inference API's one stage: a consumer calls predict, the model summary, "
                "health and the OpenAPI document, and API keys limit each client further.",
            )
