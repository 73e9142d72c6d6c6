"""The training pipeline state machine, defined by the declared ASL file with the function ARNs substituted in."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.cdk import nag
from infra.declaration import PIPELINE, Names


class Pipeline(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: Names,
        functions: Mapping[str, lambda_.IFunction],
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)
        self._steps = {placeholder: functions[key] for placeholder, key in PIPELINE.function_substitutions.items()}
        log_group = self._build_log_group(names, log_retention)
        role = self._build_role()
        self.state_machine = self._build_state_machine(names, role, log_group)

    def _build_log_group(self, names: Names, log_retention: logs.RetentionDays) -> logs.LogGroup:
        return logs.LogGroup(
            self,
            "LogGroup",
            # The /aws/vendedlogs/ prefix keeps Step Functions from growing the account's log resource policy.
            log_group_name=f"/aws/vendedlogs/states/{names.state_machine}",
            retention=log_retention,
            removal_policy=RemovalPolicy.DESTROY,
        )

    def _build_role(self) -> iam.Role:
        role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
            description=f"{PIPELINE.physical_name()}: invokes its step functions only",
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

    def _build_state_machine(self, names: Names, role: iam.IRole, log_group: logs.ILogGroup) -> sfn.StateMachine:
        return sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_name=names.state_machine,
            state_machine_type=sfn.StateMachineType.STANDARD,
            # CloudFormation substitutes the ARNs, so the template carries the ASL file verbatim.
            definition_body=sfn.DefinitionBody.from_string(PIPELINE.definition_template()),
            definition_substitutions={placeholder: step.function_arn for placeholder, step in self._steps.items()},
            role=role,
            logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=True),
            tracing_enabled=True,
        )
