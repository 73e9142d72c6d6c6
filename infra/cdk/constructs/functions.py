"""Every declared function, each with its own log group and least-privilege role derived from its `Grants`, and the
declared handling of their asynchronous invocations (retries, on-failure destination)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.cdk import nag
from infra.cdk.arns import Arns
from infra.cdk.constructs.layers import ARCHITECTURE, RUNTIME
from infra.cdk.constructs.pipeline import executions_arn, state_machine_arn
from infra.declaration import (
    ASYNC_INVOCATIONS,
    FUNCTIONS,
    Access,
    AsyncInvokeSpec,
    FunctionSpec,
    Grants,
    Layer,
    Names,
    audit_checkpoint_objects,
    function_environment,
)

# Exactly the calls loopml_core's adapters (object_store, table, pipeline, notifier) make, per access level.
OBJECT_READ = ("s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectTagging", "s3:GetObjectVersionTagging")
OBJECT_WRITE = ("s3:PutObject", "s3:PutObjectTagging", "s3:PutObjectVersionTagging")
OBJECT_TAGS = ("s3:GetObjectTagging", "s3:GetObjectVersionTagging", "s3:PutObjectTagging", "s3:PutObjectVersionTagging")
BUCKET_READ = ("s3:ListBucket",)
TABLE_READ = ("dynamodb:GetItem", "dynamodb:Query")
# TransactWriteItems has no IAM action of its own: each of its items is authorized as the single-item call it stands
# for — a Put as dynamodb:PutItem, an Update as UpdateItem, a Delete as DeleteItem, a ConditionCheck as
# dynamodb:ConditionCheckItem (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis-iam.html)
# — with that item's key as dynamodb:LeadingKeys (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/
# specifying-conditions.html), so the partition condition binds every item of a transaction. Only single-item writes,
# which always carry their key, go under the condition: ForAllValues holds vacuously for a request without the key.
# The functions' commits are Puts (registry_writes); the drift check also deletes the alerts it published.
TABLE_PUT = ("dynamodb:PutItem",)
TABLE_DELETE = ("dynamodb:DeleteItem",)
LEADING_KEYS = "dynamodb:LeadingKeys"
# Starting a run also describes it, and listing runs lets a caller see whether one is already running.
PIPELINE_START = ("states:StartExecution", "states:ListExecutions")
PIPELINE_DESCRIBE = ("states:DescribeExecution",)
# Starting a batch describes the execution it started (or the one a redelivered event already started).
BATCH_START = ("states:StartExecution",)
BATCH_DESCRIBE = ("states:DescribeExecution",)
ALERT_PUBLISH = ("sns:Publish",)
EVENTS_PUT = ("events:PutEvents",)
# An audit checkpoint is one new object under the checkpoint prefix (the audit bucket's default retention locks it
# without the caller asking, so no s3:PutObjectRetention); the functions never read, tag or delete one.
AUDIT_CHECKPOINT = ("s3:PutObject",)
# Lambda sends an asynchronous invocation's destination record with the function's own role.
DESTINATION_INVOKE = ("lambda:InvokeFunction",)

# What a function's code asset leaves out; benchmarks/package_size.py measures the same files.
CODE_EXCLUDES = ("__pycache__", "*.pyc", "tests")

READS = (Access.READ, Access.READ_WRITE)
WRITES = (Access.WRITE, Access.READ_WRITE)


def allow(actions: tuple[str, ...], resource: str) -> iam.PolicyStatement:
    return iam.PolicyStatement(actions=list(actions), resources=[resource])


def allow_under_partitions(actions: tuple[str, ...], table_arn: str, partitions: Iterable[str]) -> iam.PolicyStatement:
    """`actions` on the items of `table_arn` whose partition key matches one of `partitions` (IAM StringLike).
    ForAllValues: every partition key the request touches must match; a single-item write touches exactly one."""
    return iam.PolicyStatement(
        actions=list(actions),
        resources=[table_arn],
        conditions={"ForAllValues:StringLike": {LEADING_KEYS: sorted(partitions)}},
    )


def pascal_case(key: str) -> str:
    return "".join(part.capitalize() for part in key.split("_"))


class Functions(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: Names,
        arns: Arns,
        layers: Mapping[Layer, lambda_.ILayerVersion],
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)
        self._names, self._arns, self._layers, self._log_retention = names, arns, layers, log_retention
        self.roles: dict[str, iam.Role] = {}
        self.log_groups: dict[str, logs.LogGroup] = {}
        self._scopes: dict[str, Construct] = {}
        self.functions: dict[str, lambda_.Function] = {
            key: self._build_function(spec) for key, spec in FUNCTIONS.items()
        }
        self.async_invocations = {key: self._build_async_invocation(spec) for key, spec in ASYNC_INVOCATIONS.items()}

    def _build_function(self, spec: FunctionSpec) -> lambda_.Function:
        scope = self._scopes[spec.key] = Construct(self, pascal_case(spec.key))
        log_group = self.log_groups[spec.key] = self._build_log_group(scope, spec)
        role = self.roles[spec.key] = self._build_role(scope, spec, log_group)
        function = lambda_.Function(
            scope,
            "Function",
            function_name=spec.physical_name(),
            description=spec.description,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler=spec.handler,
            code=lambda_.Code.from_asset(str(spec.code_dir), exclude=list(CODE_EXCLUDES)),
            layers=[self._layers[key] for key in spec.layers],
            memory_size=spec.memory_mb,
            timeout=Duration.seconds(spec.timeout_s),
            environment=function_environment(self._names, spec),
            role=role,
            log_group=log_group,
            tracing=lambda_.Tracing.ACTIVE,
        )
        nag.acknowledge(
            function,
            "AwsSolutions-L1",
            f"The runtime is the declaration's LAMBDA_RUNTIME ({RUNTIME.name}): every layer is built for its CPython, "
            "so moving to a newer runtime is one change to the declaration that rebuilds all layers.",
        )
        return function

    def _build_async_invocation(self, spec: AsyncInvokeSpec) -> lambda_.CfnEventInvokeConfig:
        function = self.functions[spec.function]
        config = lambda_.CfnEventInvokeConfig(
            self._scopes[spec.function],
            "AsyncInvocation",
            function_name=function.function_name,
            qualifier="$LATEST",
            maximum_retry_attempts=spec.retry_attempts,
            destination_config=lambda_.CfnEventInvokeConfig.DestinationConfigProperty(
                on_failure=lambda_.CfnEventInvokeConfig.OnFailureProperty(
                    destination=self.functions[spec.on_failure].function_arn
                )
            ),
        )
        # Lambda checks that the function's role may invoke the destination when the configuration is set.
        config.node.add_dependency(self.roles[spec.function])
        return config

    def _build_log_group(self, scope: Construct, spec: FunctionSpec) -> logs.LogGroup:
        return logs.LogGroup(
            scope,
            "LogGroup",
            log_group_name=f"/aws/lambda/{spec.physical_name()}",
            retention=self._log_retention,
            removal_policy=RemovalPolicy.DESTROY,
        )

    def _build_role(self, scope: Construct, spec: FunctionSpec, log_group: logs.ILogGroup) -> iam.Role:
        role = iam.Role(
            scope,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{spec.physical_name()}: only what its declared grants allow",
        )
        # Instead of the AWSLambdaBasicExecutionRole managed policy, which may write to any log group.
        role.add_to_policy(allow(("logs:CreateLogStream", "logs:PutLogEvents"), log_group.log_group_arn))
        for statement in self._grant_statements(spec.grants):
            role.add_to_policy(statement)
        if spec.key in ASYNC_INVOCATIONS:
            role.add_to_policy(allow(DESTINATION_INVOKE, self._arns.function(ASYNC_INVOCATIONS[spec.key].on_failure)))
        self._acknowledge_role_findings(role, spec.grants)
        return role

    def _grant_statements(self, grants: Grants) -> list[iam.PolicyStatement]:
        arns = self._arns
        statements = [
            *self._bucket_statements(self._names.data_bucket, grants.data_bucket),
            *self._bucket_statements(self._names.artifact_bucket, grants.artifact_bucket),
        ]
        if grants.registry_table in READS:
            statements.append(allow(TABLE_READ, arns.registry_table()))
        if grants.registry_writes:
            statements.append(allow_under_partitions(TABLE_PUT, arns.registry_table(), grants.registry_writes))
        if grants.registry_deletes:
            statements.append(allow_under_partitions(TABLE_DELETE, arns.registry_table(), grants.registry_deletes))
        if grants.start_pipeline:
            statements += [allow(PIPELINE_START, arns.state_machine()), allow(PIPELINE_DESCRIBE, arns.executions())]
        if grants.start_batch:
            machine = self._names.batch_state_machine
            statements += [
                allow(BATCH_START, state_machine_arn(self, machine)),
                allow(BATCH_DESCRIBE, executions_arn(self, machine)),
            ]
        if grants.publish_alerts:
            statements.append(allow(ALERT_PUBLISH, arns.alert_topic()))
        if grants.publish_events:
            statements.append(allow(EVENTS_PUT, arns.event_bus()))
        if grants.audit_checkpoints:
            statements.append(allow(AUDIT_CHECKPOINT, self._audit_checkpoints_arn()))
        return statements

    def _audit_checkpoints_arn(self) -> str:
        return audit_checkpoint_objects(self._arns.bucket(self._names.audit_bucket))

    def _bucket_statements(self, bucket_name: str, access: Access | None) -> list[iam.PolicyStatement]:
        statements = []
        if access in READS:
            statements += [
                allow(BUCKET_READ, self._arns.bucket(bucket_name)),
                allow(OBJECT_READ, self._arns.objects(bucket_name)),
            ]
        if access in WRITES:
            statements.append(allow(OBJECT_WRITE, self._arns.objects(bucket_name)))
        if access is Access.TAG:
            statements.append(allow(OBJECT_TAGS, self._arns.objects(bucket_name)))
        return statements

    def _acknowledge_role_findings(self, role: iam.Role, grants: Grants) -> None:
        nag.acknowledge(
            role,
            "AwsSolutions-IAM5[Resource::*]",
            "X-Ray PutTraceSegments and PutTelemetryRecords (active tracing) support no resource-level permissions.",
        )
        buckets = ((self._names.data_bucket, grants.data_bucket), (self._names.artifact_bucket, grants.artifact_bucket))
        for bucket_name, access in buckets:
            if access is not None:
                nag.acknowledge(
                    role,
                    f"AwsSolutions-IAM5[Resource::{nag.finding_resource(role, self._arns.objects(bucket_name))}]",
                    "Objects of this one bucket, whose keys are data-dependent; the actions are the exact object "
                    "calls the function makes and never include deletes.",
                )
        if grants.audit_checkpoints:
            nag.acknowledge(
                role,
                f"AwsSolutions-IAM5[Resource::{nag.finding_resource(role, self._audit_checkpoints_arn())}]",
                "Checkpoint keys name each audit record's sequence number and hash; PutObject under the checkpoint "
                "prefix only, and the bucket's Object Lock keeps every version.",
            )
        if grants.start_pipeline:
            nag.acknowledge(
                role,
                f"AwsSolutions-IAM5[Resource::{nag.finding_resource(role, self._arns.executions())}]",
                "Execution names are chosen per run; DescribeExecution is limited to executions of the pipeline.",
            )
        if grants.start_batch:
            executions = executions_arn(self, self._names.batch_state_machine)
            nag.acknowledge(
                role,
                f"AwsSolutions-IAM5[Resource::{nag.finding_resource(role, executions)}]",
                "Execution names derive from each uploaded object version; DescribeExecution is limited to executions "
                "of the batch scoring state machine.",
            )
