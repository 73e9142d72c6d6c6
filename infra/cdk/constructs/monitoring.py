"""What keeps the loop closed: the alert topic, the alarms and the dashboard, the drift schedule, and the upload
trigger."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Aws, RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.cdk.arns import Arns
from infra.cdk.constructs.functions import pascal_case
from infra.declaration import (
    ALARMS,
    DASHBOARD,
    DRIFT_SCHEDULE,
    FUNCTIONS,
    PREFIX,
    S3_TRIGGERS,
    AlarmSpec,
    Names,
    WatchedResources,
    dashboard_body,
    metric_alarm,
)


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: Names,
        arns: Arns,
        functions: Mapping[str, lambda_.IFunction],
        state_machine: sfn.IStateMachine,
        rest_api: apigw.RestApi,
        data_bucket: s3.Bucket,
        alert_email: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        publishers = [functions[key].role for key, spec in FUNCTIONS.items() if spec.grants.publish_alerts]
        self.alert_key = self._build_alert_key([role for role in publishers if role is not None])
        self.alert_topic = self._build_alert_topic(names, alert_email)
        watched = WatchedResources(
            region=Aws.REGION,
            function_names={key: function.function_name for key, function in functions.items()},
            state_machine_arn=state_machine.state_machine_arn,
            api_name=rest_api.rest_api_name,
            api_stage=rest_api.deployment_stage.stage_name,
        )
        self.alarms = {spec.key: self._build_alarm(spec, watched) for spec in ALARMS}
        self.dashboard = self._build_dashboard(watched)
        self.drift_schedule = self._build_drift_schedule(functions[DRIFT_SCHEDULE.function])
        self._build_upload_triggers(data_bucket, arns.bucket(names.data_bucket), functions)

    def _build_alert_key(self, publishers: list[iam.IRole]) -> kms.Key:
        """A customer managed key, because CloudWatch alarms cannot publish to a topic encrypted with the AWS
        managed key (aws/sns): its key policy cannot be changed to let CloudWatch use it."""
        key = kms.Key(
            self,
            "AlertKey",
            alias=f"alias/{PREFIX}-alerts",
            description="Encrypts the LoopML alert topic",
            enable_key_rotation=True,
            # Nothing stays encrypted under it: SNS only holds messages while it delivers them.
            removal_policy=RemovalPolicy.DESTROY,
        )
        key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
            )
        )
        # The functions that publish alerts use the key only through SNS, as with the AWS managed key.
        key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=publishers,
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
                conditions={"StringEquals": {"kms:ViaService": f"sns.{Aws.REGION}.amazonaws.com"}},
            )
        )
        return key

    def _build_alert_topic(self, names: Names, alert_email: str | None) -> sns.Topic:
        topic = sns.Topic(
            self,
            "AlertTopic",
            topic_name=names.alert_topic,
            display_name="LoopML alerts",
            master_key=self.alert_key,
            enforce_ssl=True,
        )
        if alert_email:
            topic.add_subscription(subscriptions.EmailSubscription(alert_email))
        return topic

    def _build_alarm(self, spec: AlarmSpec, watched: WatchedResources) -> cloudwatch.CfnAlarm:
        # The alarm is the `Resource` of a construct named after it, as an L2 alarm's is: the upload errors alarm keeps
        # the logical id it was first deployed with, so CloudFormation never replaces it by one of the same name.
        holder = Construct(self, "".join(part.capitalize() for part in spec.key.split("-")) + "Alarm")
        alarm = cloudwatch.CfnAlarm(
            holder, "Resource", comparison_operator=spec.comparison, evaluation_periods=spec.evaluation_periods
        )
        # Everything else exactly as the local cloud puts it on moto.
        for name, value in metric_alarm(spec, watched, [self.alert_topic.topic_arn]).items():
            alarm.add_property_override(name, value)
        return alarm

    def _build_dashboard(self, watched: WatchedResources) -> cloudwatch.CfnDashboard:
        # The body is rendered once for both backends; CloudFormation joins in the resource names it holds as tokens.
        return cloudwatch.CfnDashboard(
            self, "Dashboard", dashboard_name=DASHBOARD.name, dashboard_body=dashboard_body(DASHBOARD, watched)
        )

    def _build_drift_schedule(self, function: lambda_.IFunction) -> events.Rule:
        return events.Rule(
            self,
            "DriftSchedule",
            rule_name=f"{PREFIX}-{DRIFT_SCHEDULE.key}",
            description=DRIFT_SCHEDULE.description,
            schedule=events.Schedule.expression(DRIFT_SCHEDULE.expression),
            targets=[targets.LambdaFunction(function, retry_attempts=2)],
        )

    def _build_upload_triggers(
        self, bucket: s3.Bucket, bucket_arn: str, functions: Mapping[str, lambda_.IFunction]
    ) -> None:
        """Native bucket notifications rather than `add_event_notification`, which deploys a custom-resource Lambda
        (with its own role and managed policy) only to set this one property."""
        permissions = [
            lambda_.CfnPermission(
                self,
                "UploadTriggerPermission" if index == 0 else f"{pascal_case(trigger.function)}TriggerPermission",
                action="lambda:InvokeFunction",
                function_name=functions[trigger.function].function_arn,
                principal="s3.amazonaws.com",
                source_account=Aws.ACCOUNT_ID,
                source_arn=bucket_arn,
            )
            for index, trigger in enumerate(S3_TRIGGERS)
        ]
        cfn_bucket = bucket.node.default_child
        assert isinstance(cfn_bucket, s3.CfnBucket)
        cfn_bucket.notification_configuration = s3.CfnBucket.NotificationConfigurationProperty(
            lambda_configurations=[
                s3.CfnBucket.LambdaConfigurationProperty(
                    event="s3:ObjectCreated:*",
                    function=functions[trigger.function].function_arn,
                    filter=s3.CfnBucket.NotificationFilterProperty(
                        s3_key=s3.CfnBucket.S3KeyFilterProperty(
                            # An empty suffix matches every key: it is left out, as S3 takes no empty filter value.
                            rules=[
                                s3.CfnBucket.FilterRuleProperty(name=name, value=value)
                                for name, value in (("prefix", trigger.prefix), ("suffix", trigger.suffix))
                                if value
                            ]
                        )
                    ),
                )
                for trigger in S3_TRIGGERS
            ]
        )
        # S3 checks that it may invoke each function when the configuration is set.
        for permission in permissions:
            cfn_bucket.node.add_dependency(permission)
