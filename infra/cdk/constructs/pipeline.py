"""The declared state machines, each defined by its ASL file with the function ARNs substituted in: the training
pipeline, and batch scoring with its Distributed Map."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import ArnFormat, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct, IConstruct

from infra.cdk import nag
from infra.declaration import BATCH, BATCH_MAP_LABEL, BATCH_WORK_PREFIX, PIPELINE, Names, StateMachineSpec

# What the Distributed Map needs of its own state machine: start the child executions, follow and stop them, and
# redrive a map run whose children failed.
CHILDREN_START = ("states:StartExecution",)
CHILDREN_FOLLOW = ("states:DescribeExecution", "states:StopExecution")
CHILDREN_REDRIVE = ("states:RedriveExecution",)
ITEM_READ = ("s3:GetObject",)  # the ItemReader's one call: the chunk list


def state_machine_arn(scope: IConstruct, name: str) -> str:
    """A state machine's ARN from its name: a policy may name it without depending on the resource (no cycle)."""
    return Stack.of(scope).format_arn(
        service="states", resource="stateMachine", resource_name=name, arn_format=ArnFormat.COLON_RESOURCE_NAME
    )


def executions_arn(scope: IConstruct, name: str, label: str | None = None) -> str:
    """The executions of a state machine (`<name>:*`), or the child executions of its map runs labelled `label`
    (`<name>/<label>:*`)."""
    resource_name = f"{name}/{label}:*" if label else f"{name}:*"
    return Stack.of(scope).format_arn(
        service="states", resource="execution", resource_name=resource_name, arn_format=ArnFormat.COLON_RESOURCE_NAME
    )


class Pipeline(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: Names,
        functions: Mapping[str, lambda_.IFunction],
        log_retention: logs.RetentionDays,
        spec: StateMachineSpec = PIPELINE,
    ) -> None:
        super().__init__(scope, construct_id)
        self.spec = spec
        self._steps = {placeholder: functions[key] for placeholder, key in spec.function_substitutions.items()}
        log_group = self._build_log_group(log_retention)
        self.role = self._build_role()
        self.state_machine = self._build_state_machine(self.role, log_group)

    def _build_log_group(self, log_retention: logs.RetentionDays) -> logs.LogGroup:
        return logs.LogGroup(
            self,
            "LogGroup",
            # The /aws/vendedlogs/ prefix keeps Step Functions from growing the account's log resource policy.
            log_group_name=f"/aws/vendedlogs/states/{self.spec.physical_name()}",
            retention=log_retention,
            removal_policy=RemovalPolicy.DESTROY,
        )

    def _build_role(self) -> iam.Role:
        role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
            description=f"{self.spec.physical_name()}: invokes its step functions only",
        )
        # Exactly the unqualified ARNs the definition invokes, not `<arn>:*` (no version or alias is ever used).
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["lambda:InvokeFunction"], resources=[step.function_arn for step in self._steps.values()]
            )
        )
        nag.acknowledge(
            role,
            "AwsSolutions-IAM5[Resource::*]",
            "CloudWatch Logs log delivery and X-Ray tracing actions support no resource-level permissions.",
        )
        return role

    def _build_state_machine(self, role: iam.IRole, log_group: logs.ILogGroup) -> sfn.StateMachine:
        return sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_name=self.spec.physical_name(),
            state_machine_type=sfn.StateMachineType.STANDARD,
            # CloudFormation substitutes the ARNs, so the template carries the ASL file verbatim.
            definition_body=sfn.DefinitionBody.from_string(self.spec.definition_template()),
            definition_substitutions={placeholder: step.function_arn for placeholder, step in self._steps.items()},
            role=role,
            logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=True),
            tracing_enabled=True,
        )


class BatchScoring(Pipeline):
    """The batch state machine. Its Distributed Map runs each chunk as a child execution of this same state machine
    and reads the chunk list from the artifact bucket, so its role may do both, and nothing more."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: Names,
        functions: Mapping[str, lambda_.IFunction],
        log_retention: logs.RetentionDays,
        artifact_bucket_arn: str,
    ) -> None:
        super().__init__(scope, construct_id, names=names, functions=functions, log_retention=log_retention, spec=BATCH)
        self._grant_distributed_map(names.batch_state_machine, artifact_bucket_arn)

    def _grant_distributed_map(self, machine: str, artifact_bucket_arn: str) -> None:
        role = self.role
        executions = executions_arn(self, machine)
        children = executions_arn(self, machine, BATCH_MAP_LABEL)
        chunk_lists = f"{artifact_bucket_arn}/{BATCH_WORK_PREFIX}*"
        for actions, resource in (
            (CHILDREN_START, state_machine_arn(self, machine)),
            (CHILDREN_FOLLOW, executions),
            (CHILDREN_REDRIVE, children),
            (ITEM_READ, chunk_lists),
        ):
            role.add_to_policy(iam.PolicyStatement(actions=list(actions), resources=[resource]))
        nag.acknowledge(
            role,
            f"AwsSolutions-IAM5[Resource::{nag.finding_resource(role, executions)}]",
            "The Distributed Map follows and stops the child executions it starts; their names are generated per "
            "chunk, so they are named by their state machine, which is this one.",
        )
        nag.acknowledge(
            role,
            f"AwsSolutions-IAM5[Resource::{nag.finding_resource(role, children)}]",
            "Redriving a failed map run restarts its child executions, named per chunk under this state machine's "
            "ScoreChunks label.",
        )
        nag.acknowledge(
            role,
            f"AwsSolutions-IAM5[Resource::{nag.finding_resource(role, chunk_lists)}]",
            "The ItemReader reads the chunk list a plan step wrote under batch-work/ of the artifact bucket; its key "
            "holds the execution's name, so only the prefix is known in advance.",
        )
