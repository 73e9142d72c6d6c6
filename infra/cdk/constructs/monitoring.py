"""What keeps the loop closed: the alert topic, the drift schedule, and the upload trigger of the validation."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Aws
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from infra.cdk.arns import Arns
from infra.declaration import DRIFT_SCHEDULE, PREFIX, UPLOAD_TRIGGER, Names


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: Names,
        arns: Arns,
        functions: Mapping[str, lambda_.IFunction],
        data_bucket: s3.Bucket,
        alert_email: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.alert_topic = self._build_alert_topic(names, alert_email)
        self.drift_schedule = self._build_drift_schedule(functions[DRIFT_SCHEDULE.function])
        function_key, prefix, suffix = UPLOAD_TRIGGER
        self._build_upload_trigger(data_bucket, arns.bucket(names.data_bucket), functions[function_key], prefix, suffix)

    def _build_alert_topic(self, names: Names, alert_email: str | None) -> sns.Topic:
        topic = sns.Topic(
            self,
            "AlertTopic",
            topic_name=names.alert_topic,
            display_name="LoopML alerts",
            # The AWS managed key: only Lambda publishes here, and a customer key would cost without adding control.
            master_key=kms.Alias.from_alias_name(self, "SnsManagedKey", "alias/aws/sns"),
            enforce_ssl=True,
        )
        if alert_email:
            topic.add_subscription(subscriptions.EmailSubscription(alert_email))
        return topic

    def _build_drift_schedule(self, function: lambda_.IFunction) -> events.Rule:
        return events.Rule(
            self,
            "DriftSchedule",
            rule_name=f"{PREFIX}-{DRIFT_SCHEDULE.key}",
            description=DRIFT_SCHEDULE.description,
            schedule=events.Schedule.expression(DRIFT_SCHEDULE.expression),
            targets=[targets.LambdaFunction(function, retry_attempts=2)],
        )

    def _build_upload_trigger(
        self, bucket: s3.Bucket, bucket_arn: str, function: lambda_.IFunction, prefix: str, suffix: str
    ) -> None:
        """A native bucket notification rather than `add_event_notification`, which deploys a custom-resource Lambda
        (with its own role and managed policy) only to set this one property."""
        permission = lambda_.CfnPermission(
            self,
            "UploadTriggerPermission",
            action="lambda:InvokeFunction",
            function_name=function.function_arn,
            principal="s3.amazonaws.com",
            source_account=Aws.ACCOUNT_ID,
            source_arn=bucket_arn,
        )
        cfn_bucket = bucket.node.default_child
        assert isinstance(cfn_bucket, s3.CfnBucket)
        cfn_bucket.notification_configuration = s3.CfnBucket.NotificationConfigurationProperty(
            lambda_configurations=[
                s3.CfnBucket.LambdaConfigurationProperty(
                    event="s3:ObjectCreated:*",
                    function=function.function_arn,
                    filter=s3.CfnBucket.NotificationFilterProperty(
                        s3_key=s3.CfnBucket.S3KeyFilterProperty(
                            rules=[
                                s3.CfnBucket.FilterRuleProperty(name="prefix", value=prefix),
                                s3.CfnBucket.FilterRuleProperty(name="suffix", value=suffix),
                            ]
                        )
                    ),
                )
            ]
        )
        # S3 checks that it may invoke the function when the configuration is set.
        cfn_bucket.node.add_dependency(permission)
