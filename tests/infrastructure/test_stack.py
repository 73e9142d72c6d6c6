"""The synthesized LoopML stack matches the declaration, grants least privilege and passes cdk-nag and cfn-lint."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import Validations
from cdk_nag import AwsSolutionsChecks
from cfn_template import NAMES, Synthesized, Template, arn, flatten
from cfnlint.api import ManualArgs, lint

from infra.cdk import nag
from infra.cdk.app_factory import SKIP_BUNDLING, create_app
from infra.declaration import (
    ALARMS,
    API,
    ASYNC_INVOCATIONS,
    BATCH_START_FAILURES,
    CAPTURE_DELIVERY,
    DASHBOARD,
    DRIFT_ALARM,
    DRIFT_SCHEDULE,
    DUTIES,
    FUNCTIONS,
    LABEL_FAILURES,
    LABELS_TRIGGER,
    LAMBDA_RUNTIME,
    LAYERS,
    METRICS_NAMESPACE,
    PERFORMANCE_ALARM,
    PIPELINE,
    PREDICT_LATENCY_ALARM,
    PREFIX,
    S3_TRIGGERS,
    SERVICE_NAME,
    UPLOAD_ERRORS_ALARM,
    UPLOAD_TRIGGER,
    VALIDATION_FAILURES,
    Access,
    AlarmSpec,
    AsyncInvokeSpec,
    FunctionSpec,
    MetricSource,
    WatchedResources,
    artifact_expiry,
    capture_destination,
    dashboard_body,
    function_environment,
    metric_alarm,
)
from loopml_core.models import UploadStatus

# One worker runs all of these under `pytest -n N --dist loadgroup`, so the app is synthesized once.
pytestmark = pytest.mark.xdist_group("cdk")

Permission = tuple[str, str]  # (action, flattened resource)

XRAY = {("xray:PutTraceSegments", "*"), ("xray:PutTelemetryRecords", "*")}
# What each access level means, written out independently of the construct that implements it.
OBJECT_READ = {"s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectTagging", "s3:GetObjectVersionTagging"}
OBJECT_WRITE = {"s3:PutObject", "s3:PutObjectTagging", "s3:PutObjectVersionTagging"}
OBJECT_TAGS = {"s3:GetObjectTagging", "s3:GetObjectVersionTagging", "s3:PutObjectTagging", "s3:PutObjectVersionTagging"}
TABLE_ARN = arn("dynamodb", f"table/{NAMES.registry_table}")
STATE_MACHINE_ARN = arn("states", f"stateMachine:{NAMES.state_machine}")
EXECUTIONS_ARN = arn("states", f"execution:{NAMES.state_machine}:*")
BATCH_MACHINE_ARN = arn("states", f"stateMachine:{NAMES.batch_state_machine}")
BATCH_EXECUTIONS_ARN = arn("states", f"execution:{NAMES.batch_state_machine}:*")
TOPIC_ARN = arn("sns", NAMES.alert_topic)
EVENT_BUS_ARN = arn("events", "event-bus/default")


def bucket_arn(name: str) -> str:
    return arn("s3", name, regional=False)


def function_arn(key: str) -> str:
    return arn("lambda", f"function:{FUNCTIONS[key].physical_name()}")


# --- helpers -------------------------------------------------------------------------------------------------------


def function_id(template: Template, key: str) -> str:
    return template.one("AWS::Lambda::Function", FunctionName=FUNCTIONS[key].physical_name())


def bucket_id(template: Template, name: str) -> str:
    return template.one("AWS::S3::Bucket", BucketName=name)


def role_id(template: Template, function_logical_id: str) -> str:
    role = template.props(function_logical_id)["Role"]
    assert set(role) == {"Fn::GetAtt"}, role
    return str(role["Fn::GetAtt"][0])


def statements_of_role(template: Template, role_logical_id: str) -> Iterator[dict[str, Any]]:
    role = template.props(role_logical_id)
    for policy in role.get("Policies", []):
        yield from policy["PolicyDocument"]["Statement"]
    for policy in template.of_type("AWS::IAM::Policy").values():
        if {"Ref": role_logical_id} in policy["Properties"]["Roles"]:
            yield from policy["Properties"]["PolicyDocument"]["Statement"]


def under_condition(resource: str, condition: dict[str, Any] | None) -> str:
    """A resource as a permission names it: with the statement's condition, if it has one."""
    return resource if condition is None else f"{resource} when {json.dumps(condition, sort_keys=True)}"


def under_partitions(partitions: tuple[str, ...]) -> str:
    """The registry table, limited to items whose partition key matches one of `partitions`."""
    return under_condition(TABLE_ARN, {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": sorted(partitions)}})


def permissions_of_role(template: Template, role_logical_id: str) -> set[Permission]:
    permissions: set[Permission] = set()
    for statement in statements_of_role(template, role_logical_id):
        assert statement["Effect"] == "Allow", statement
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        condition = statement.get("Condition")
        permissions |= {
            (action, under_condition(flatten(resource), condition)) for action in actions for resource in resources
        }
    return permissions


def expected_permissions(template: Template, spec: FunctionSpec) -> set[Permission]:  # noqa: PLR0912 - one per grant
    grants = spec.grants
    log_group = template.one("AWS::Logs::LogGroup", LogGroupName=f"/aws/lambda/{spec.physical_name()}")
    expected = {(action, "${" + log_group + ".Arn}") for action in ("logs:CreateLogStream", "logs:PutLogEvents")}
    expected |= XRAY
    for name, access in ((NAMES.data_bucket, grants.data_bucket), (NAMES.artifact_bucket, grants.artifact_bucket)):
        if access in (Access.READ, Access.READ_WRITE):
            expected.add(("s3:ListBucket", bucket_arn(name)))
            expected |= {(action, f"{bucket_arn(name)}/*") for action in OBJECT_READ}
        if access in (Access.WRITE, Access.READ_WRITE):
            expected |= {(action, f"{bucket_arn(name)}/*") for action in OBJECT_WRITE}
        if access is Access.TAG:
            expected |= {(action, f"{bucket_arn(name)}/*") for action in OBJECT_TAGS}
    if grants.registry_table in (Access.READ, Access.READ_WRITE):
        expected |= {("dynamodb:GetItem", TABLE_ARN), ("dynamodb:Query", TABLE_ARN)}
    if grants.registry_writes:  # only under the declared partitions: never table-wide
        expected.add(("dynamodb:PutItem", under_partitions(grants.registry_writes)))
    if grants.registry_deletes:
        expected.add(("dynamodb:DeleteItem", under_partitions(grants.registry_deletes)))
    if grants.start_pipeline:
        expected |= {
            ("states:StartExecution", STATE_MACHINE_ARN),
            ("states:ListExecutions", STATE_MACHINE_ARN),
            ("states:DescribeExecution", EXECUTIONS_ARN),
        }
    if grants.start_batch:
        expected |= {("states:StartExecution", BATCH_MACHINE_ARN), ("states:DescribeExecution", BATCH_EXECUTIONS_ARN)}
    if grants.publish_alerts:
        expected.add(("sns:Publish", TOPIC_ARN))
    if grants.audit_checkpoints:
        expected.add(("s3:PutObject", f"{bucket_arn(NAMES.audit_bucket)}/audit/checkpoints/*"))
    if grants.publish_events:
        expected.add(("events:PutEvents", EVENT_BUS_ARN))
    if spec.key in ASYNC_INVOCATIONS:
        expected.add(("lambda:InvokeFunction", function_arn(ASYNC_INVOCATIONS[spec.key].on_failure)))
    return expected


def function_permissions(template: Template, key: str) -> set[Permission]:
    return permissions_of_role(template, role_id(template, function_id(template, key)))


# --- storage -------------------------------------------------------------------------------------------------------


def test_every_bucket_is_encrypted_private_and_ssl_only(template: Template) -> None:
    buckets = template.of_type("AWS::S3::Bucket")
    assert len(buckets) == 4  # data, artifacts, audit checkpoints, and their access logs
    policies = {
        flatten(p["Properties"]["Bucket"]): p["Properties"] for p in template.of_type("AWS::S3::BucketPolicy").values()
    }
    for logical_id, bucket in buckets.items():
        props = bucket["Properties"]
        encryption = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
        assert encryption["SSEAlgorithm"] in {"AES256", "aws:kms"}
        assert props["PublicAccessBlockConfiguration"] == dict.fromkeys(
            ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"), True
        )
        assert bucket["DeletionPolicy"] == "Retain"
        ssl_denials = [
            s
            for s in policies["${" + logical_id + "}"]["PolicyDocument"]["Statement"]
            if s["Effect"] == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
        ]
        assert ssl_denials and ssl_denials[0]["Action"] == "s3:*" and ssl_denials[0]["Principal"] == {"AWS": "*"}


@pytest.mark.parametrize("name", [NAMES.data_bucket, NAMES.artifact_bucket])
def test_data_and_artifact_buckets_are_versioned_and_logged(template: Template, name: str) -> None:
    props = template.props(bucket_id(template, name))
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert "DestinationBucketName" in props["LoggingConfiguration"]


def test_registry_table(template: Template) -> None:
    props = template.props(template.one("AWS::DynamoDB::Table", TableName=NAMES.registry_table))
    assert props["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert sorted(props["AttributeDefinitions"], key=lambda a: a["AttributeName"]) == [
        {"AttributeName": "pk", "AttributeType": "S"},
        {"AttributeName": "sk", "AttributeType": "S"},
    ]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert "GlobalSecondaryIndexes" not in props


# --- functions and their roles -------------------------------------------------------------------------------------


def test_only_the_declared_functions_exist(template: Template) -> None:
    names = {props["Properties"]["FunctionName"] for props in template.of_type("AWS::Lambda::Function").values()}
    assert names == {spec.physical_name() for spec in FUNCTIONS.values()}


@pytest.mark.parametrize("spec", FUNCTIONS.values(), ids=FUNCTIONS.keys())
def test_function_matches_declaration(template: Template, spec: FunctionSpec) -> None:
    props = template.props(function_id(template, spec.key))
    assert props["Runtime"] == LAMBDA_RUNTIME == "python3.12"
    assert props["Handler"] == spec.handler
    assert props["MemorySize"] == spec.memory_mb
    assert props["Timeout"] == spec.timeout_s
    assert props["Architectures"] == ["x86_64"]
    assert props["TracingConfig"] == {"Mode": "Active"}
    environment = {name: flatten(value) for name, value in props["Environment"]["Variables"].items()}
    assert environment == function_environment(NAMES, spec)
    layer_names = [template.props(layer["Ref"])["LayerName"] for layer in props["Layers"]]
    assert layer_names == [f"{PREFIX}-{key.value}" for key in spec.layers]
    log_group = template.props(props["LoggingConfig"]["LogGroup"]["Ref"])
    assert log_group["LogGroupName"] == f"/aws/lambda/{spec.physical_name()}"
    assert log_group["RetentionInDays"] > 0


def test_layers_match_declaration(template: Template) -> None:
    layers = {
        p["Properties"]["LayerName"]: p["Properties"] for p in template.of_type("AWS::Lambda::LayerVersion").values()
    }
    assert set(layers) == {f"{PREFIX}-{key.value}" for key in LAYERS}
    for key, spec in LAYERS.items():
        assert layers[f"{PREFIX}-{key.value}"]["CompatibleRuntimes"] == [LAMBDA_RUNTIME]
        assert layers[f"{PREFIX}-{key.value}"]["Description"] == spec.description


def test_one_role_per_function_and_none_shared(template: Template) -> None:
    roles = [role_id(template, function_id(template, key)) for key in FUNCTIONS]
    assert len(set(roles)) == len(FUNCTIONS)
    for role in roles:
        props = template.props(role)
        assert props["AssumeRolePolicyDocument"]["Statement"] == [
            {"Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}}
        ]
        assert "ManagedPolicyArns" not in props
    policies = template.of_type("AWS::IAM::Policy").values()
    for policy in policies:
        assert len(policy["Properties"]["Roles"]) == 1  # no policy is shared between roles either
    # The only managed policies are the declared duties, for people: no function role is given one.
    duties = template.of_type("AWS::IAM::ManagedPolicy").values()
    assert sorted(p["Properties"]["ManagedPolicyName"] for p in duties) == sorted(
        d.policy_name() for d in DUTIES.values()
    )
    assert not [p for p in duties if {"Roles", "Users", "Groups"} & set(p["Properties"])]


@pytest.mark.parametrize("spec", FUNCTIONS.values(), ids=FUNCTIONS.keys())
def test_role_grants_exactly_what_the_declaration_says(template: Template, spec: FunctionSpec) -> None:
    assert function_permissions(template, spec.key) == expected_permissions(template, spec)


def test_no_wildcard_actions_and_no_unscoped_resources_beyond_xray(template: Template) -> None:
    for key in FUNCTIONS:
        for action, resource in function_permissions(template, key):
            assert "*" not in action, (key, action)
            assert resource != "*" or (action, resource) in XRAY, (key, action)


def test_predict_cannot_write_the_registry_nor_start_runs(template: Template) -> None:
    actions = {action for action, _ in function_permissions(template, "predict")}
    assert "dynamodb:PutItem" not in actions
    assert not {a for a in actions if a.startswith("states:")}
    assert not {
        (a, r) for a, r in function_permissions(template, "predict") if r.startswith(bucket_arn(NAMES.data_bucket))
    }


def test_predict_writes_no_object_it_captures_through_its_log_stream(template: Template) -> None:
    actions = {action for action, _ in function_permissions(template, "predict")}
    assert not {a for a in actions if a.startswith("s3:Put")}


def test_capture_lines_reach_s3_through_the_declared_subscription_and_stream(template: Template) -> None:
    spec = CAPTURE_DELIVERY
    stream = template.one("AWS::KinesisFirehose::DeliveryStream", DeliveryStreamName=spec.physical_name())
    destination = template.props(stream)["ExtendedS3DestinationConfiguration"]
    delivery_role = destination["RoleARN"]["Fn::GetAtt"][0]
    artifacts = bucket_id(template, NAMES.artifact_bucket)
    expected = capture_destination(spec, {"Fn::GetAtt": [artifacts, "Arn"]}, {"Fn::GetAtt": [delivery_role, "Arn"]})
    assert destination == expected  # the very configuration the local cloud creates on moto
    assert template.props(stream)["DeliveryStreamEncryptionConfigurationInput"] == {"KeyType": "AWS_OWNED_CMK"}
    writes = {(a, r) for a, r in permissions_of_role(template, delivery_role) if a == "s3:PutObject"}
    assert writes == {
        ("s3:PutObject", f"${{{artifacts}.Arn}}/{spec.prefix}*"),
        ("s3:PutObject", f"${{{artifacts}.Arn}}/{spec.error_prefix}*"),
    }
    log_group = template.one(
        "AWS::Logs::LogGroup", LogGroupName=f"/aws/lambda/{FUNCTIONS[spec.function].physical_name()}"
    )
    subscription = template.one("AWS::Logs::SubscriptionFilter", FilterPattern=spec.filter_pattern)
    props = template.props(subscription)
    assert props["LogGroupName"] == {"Ref": log_group} and props["DestinationArn"] == {"Fn::GetAtt": [stream, "Arn"]}
    sender = props["RoleArn"]["Fn::GetAtt"][0]
    assert permissions_of_role(template, sender) == {
        ("firehose:PutRecord", f"${{{stream}.Arn}}"),
        ("firehose:PutRecordBatch", f"${{{stream}.Arn}}"),
    }


def test_captures_expire_by_retention_class(template: Template) -> None:
    rules = template.props(bucket_id(template, NAMES.artifact_bucket))["LifecycleConfiguration"]["Rules"]
    expiring = {(r["Prefix"], r["ExpirationInDays"]) for r in rules if "ExpirationInDays" in r}
    assert expiring == set(artifact_expiry(CAPTURE_DELIVERY))
    assert all(r["NoncurrentVersionExpiration"]["NoncurrentDays"] == 1 for r in rules if "ExpirationInDays" in r)
    data_rules = template.props(bucket_id(template, NAMES.data_bucket))["LifecycleConfiguration"]["Rules"]
    assert not [r for r in data_rules if "ExpirationInDays" in r]  # uploads and datasets never expire


def test_validate_may_start_only_the_pipeline(template: Template) -> None:
    starts = {r for a, r in function_permissions(template, "validate_upload") if a == "states:StartExecution"}
    assert starts == {STATE_MACHINE_ARN}
    machine = template.one("AWS::StepFunctions::StateMachine", StateMachineName=PIPELINE.physical_name())
    assert STATE_MACHINE_ARN.endswith(f":stateMachine:{template.props(machine)['StateMachineName']}")


def test_only_the_declared_publishers_may_publish_alerts(template: Template) -> None:
    publishers = {key for key in FUNCTIONS if any(a == "sns:Publish" for a, _ in function_permissions(template, key))}
    assert publishers == {key for key, spec in FUNCTIONS.items() if spec.grants.publish_alerts}
    assert publishers == {"drift_check", "upload_failed", "request_approval"}


def test_only_the_functions_that_change_versions_and_aliases_put_registry_events(template: Template) -> None:
    putting = {k for k in FUNCTIONS if ("events:PutEvents", EVENT_BUS_ARN) in function_permissions(template, k)}
    assert putting == {key for key, spec in FUNCTIONS.items() if spec.grants.publish_events}
    assert putting == {"register_model", "request_approval", "drift_check"}  # the check delivers what waited


def test_alert_topic_key_lets_alarms_and_only_the_publishers_through_sns_use_it(template: Template) -> None:
    topic = template.props(template.one("AWS::SNS::Topic", TopicName=NAMES.alert_topic))
    key_id = flatten(topic["KmsMasterKeyId"]).removeprefix("${").removesuffix(".Arn}").removesuffix("}")
    key = template.props(key_id)
    assert key["EnableKeyRotation"] is True
    statements = key["KeyPolicy"]["Statement"]
    by_principal = {json.dumps(s["Principal"], sort_keys=True): s for s in statements}
    cloudwatch = by_principal[json.dumps({"Service": "cloudwatch.amazonaws.com"})]
    assert sorted(cloudwatch["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey*"]
    publishers = [s for s in statements if isinstance(s["Principal"].get("AWS"), list)]
    [statement] = publishers
    roles = {flatten(principal) for principal in statement["Principal"]["AWS"]}
    assert roles == {
        "${" + role_id(template, function_id(template, key)) + ".Arn}"
        for key, spec in FUNCTIONS.items()
        if spec.grants.publish_alerts
    }
    assert sorted(statement["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey*"]
    assert flatten(statement["Condition"]["StringEquals"]["kms:ViaService"]) == "sns.${AWS::Region}.amazonaws.com"


def test_upload_failed_role_is_least_privilege(template: Template) -> None:
    objects = f"{bucket_arn(NAMES.data_bucket)}/*"
    log_group = template.one(
        "AWS::Logs::LogGroup", LogGroupName=f"/aws/lambda/{FUNCTIONS['upload_failed'].physical_name()}"
    )
    assert function_permissions(template, "upload_failed") == XRAY | {
        ("logs:CreateLogStream", "${" + log_group + ".Arn}"),
        ("logs:PutLogEvents", "${" + log_group + ".Arn}"),
        *((action, objects) for action in OBJECT_TAGS),  # tags only: no upload's content, no new object
        ("dynamodb:GetItem", TABLE_ARN),
        ("dynamodb:Query", TABLE_ARN),
        ("dynamodb:PutItem", under_partitions(("AUDIT", "DATASET#*"))),  # an upload's outcome, never a model
        ("sns:Publish", TOPIC_ARN),
        ("s3:PutObject", f"{bucket_arn(NAMES.audit_bucket)}/audit/checkpoints/*"),  # its commits' checkpoints
    }


# --- every upload ends with an outcome: validation failures ---------------------------------------------------------


@pytest.mark.parametrize(
    "spec", [VALIDATION_FAILURES, LABEL_FAILURES, BATCH_START_FAILURES], ids=lambda spec: spec.function
)
def test_upload_handlers_are_retried_then_sent_to_upload_failed(template: Template, spec: AsyncInvokeSpec) -> None:
    handler, failed = function_id(template, spec.function), function_id(template, "upload_failed")
    config_id = template.one("AWS::Lambda::EventInvokeConfig", FunctionName="${" + handler + "}")
    config = template.props(config_id)
    assert config["MaximumRetryAttempts"] == spec.retry_attempts == 2
    assert config["Qualifier"] == "$LATEST"
    assert flatten(config["DestinationConfig"]["OnFailure"]["Destination"]) == "${" + failed + ".Arn}"
    assert "OnSuccess" not in config["DestinationConfig"]
    # Lambda checks the role's permission to invoke the destination when the configuration is created.
    assert role_id(template, handler) in template.resources[config_id]["DependsOn"]
    assert len(template.of_type("AWS::Lambda::EventInvokeConfig")) == len(ASYNC_INVOCATIONS) == 3


def test_only_upload_handlers_may_invoke_a_function_and_only_their_destination(template: Template) -> None:
    invokes = {
        (key, resource)
        for key in FUNCTIONS
        for action, resource in function_permissions(template, key)
        if action.startswith("lambda:")
    }
    assert invokes == {
        ("validate_upload", function_arn("upload_failed")),
        ("ingest_labels", function_arn("upload_failed")),
        ("batch_start", function_arn("upload_failed")),
    }
    assert FUNCTIONS["upload_failed"].physical_name() == "loopml-upload-failed"


def test_upload_errors_alarm_publishes_to_the_alert_topic(template: Template) -> None:
    alarm = template.props(template.one("AWS::CloudWatch::Alarm", AlarmName=f"{PREFIX}-upload-errors"))
    [metric] = UPLOAD_ERRORS_ALARM.metrics
    failed = function_id(template, "upload_failed")
    assert {spec.on_failure for spec in ASYNC_INVOCATIONS.values()} == {metric.function} == {"upload_failed"}
    assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == ("AWS/Lambda", "Invocations", "Sum")
    assert [(d["Name"], flatten(d["Value"])) for d in alarm["Dimensions"]] == [("FunctionName", "${" + failed + "}")]
    assert alarm["Period"] == UPLOAD_ERRORS_ALARM.period_s == 300
    assert alarm["Threshold"] == 1 and alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["EvaluationPeriods"] == 1 and alarm["TreatMissingData"] == "notBreaching"
    topic = template.one("AWS::SNS::Topic", TopicName=NAMES.alert_topic)
    assert [flatten(action) for action in alarm["AlarmActions"]] == ["${" + topic + "}"]
    # Deployed before the alarms were generalised: a new logical id would replace it by an alarm of the same name.
    assert template.one("AWS::CloudWatch::Alarm", AlarmName=f"{PREFIX}-upload-errors").startswith(
        "MonitoringUploadErrorsAlarm"
    )


# --- alarms and dashboard ------------------------------------------------------------------------------------------


def resolved(value: Any) -> Any:
    """A template value with every intrinsic function in it flattened, for comparison with a rendered declaration."""
    if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in ("Ref", "Fn::GetAtt", "Fn::Join"):
        return flatten(value)
    if isinstance(value, dict):
        return {key: resolved(item) for key, item in value.items()}
    if isinstance(value, list):
        return [resolved(item) for item in value]
    return value


def watched_in(template: Template) -> WatchedResources:
    """What the alarms and the dashboard must watch: the resources this template deploys, by reference."""
    machine = template.one("AWS::StepFunctions::StateMachine", StateMachineName=NAMES.state_machine)
    template.one("AWS::ApiGateway::RestApi", Name=API.name)
    stage = template.one("AWS::ApiGateway::Stage", StageName=API.stage)
    return WatchedResources(
        region="${AWS::Region}",
        function_names={key: "${" + function_id(template, key) + "}" for key in FUNCTIONS},
        state_machine_arn="${" + machine + "}",
        api_name=API.name,
        api_stage="${" + stage + "}",
    )


def alarm_props(template: Template, spec: AlarmSpec) -> dict[str, Any]:
    return template.props(template.one("AWS::CloudWatch::Alarm", AlarmName=spec.physical_name()))


def watched_metrics(alarm: dict[str, Any]) -> list[tuple[str, str, str, dict[str, str]]]:
    """(namespace, metric, statistic, dimensions) of each metric an alarm reads, single or summed by metric math."""
    if "Metrics" not in alarm:
        statistic = alarm.get("Statistic") or alarm["ExtendedStatistic"]
        stats = [{"Metric": alarm, "Stat": statistic}]
    else:
        stats = [query["MetricStat"] for query in alarm["Metrics"] if "MetricStat" in query]
    return [
        (
            stat["Metric"]["Namespace"],
            stat["Metric"]["MetricName"],
            stat["Stat"],
            {d["Name"]: flatten(d["Value"]) for d in stat["Metric"]["Dimensions"]},
        )
        for stat in stats
    ]


def test_exactly_the_declared_alarms_exist(template: Template) -> None:
    names = [props["Properties"]["AlarmName"] for props in template.of_type("AWS::CloudWatch::Alarm").values()]
    assert sorted(names) == sorted(spec.physical_name() for spec in ALARMS)
    assert len(names) == len(ALARMS) == len({spec.key for spec in ALARMS}) == 13


@pytest.mark.parametrize("spec", ALARMS, ids=lambda spec: spec.key)
def test_alarm_matches_the_declaration_and_publishes_to_the_alert_topic(template: Template, spec: AlarmSpec) -> None:
    alarm = alarm_props(template, spec)
    topic = template.one("AWS::SNS::Topic", TopicName=NAMES.alert_topic)
    assert resolved(alarm["AlarmActions"]) == ["${" + topic + "}"]
    assert alarm["Threshold"] == spec.threshold and alarm["ComparisonOperator"] == spec.comparison
    assert alarm["EvaluationPeriods"] == spec.evaluation_periods
    assert alarm["DatapointsToAlarm"] == (spec.datapoints_to_alarm or spec.evaluation_periods)
    assert alarm["TreatMissingData"] == spec.treat_missing_data == "notBreaching"
    # Each metric resolves to the resource the template deploys (the function, the state machine, the API stage).
    watched = watched_in(template)
    assert watched_metrics(alarm) == [
        (metric.namespace, metric.name, spec.statistic, metric.dimensions(watched)) for metric in spec.metrics
    ]
    if len(spec.metrics) > 1:
        [total] = [query for query in alarm["Metrics"] if query["ReturnData"]]
        assert total["Expression"] == f"SUM([{', '.join(f'm{index}' for index in range(len(spec.metrics)))}])"
        assert {query["MetricStat"]["Period"] for query in alarm["Metrics"] if "MetricStat" in query} == {spec.period_s}
    else:
        assert alarm["Period"] == spec.period_s
        assert ("Statistic" in alarm) == (spec.statistic in {"Sum", "Average", "Minimum", "Maximum", "SampleCount"})
    # The very alarm the local cloud puts on moto, with the template's references for the names.
    rendered = metric_alarm(spec, watched, ["${" + topic + "}"])
    assert {key: resolved(value) for key, value in alarm.items() if key != "Tags"} == rendered


def test_alarms_watch_what_the_issue_asks_for(template: Template) -> None:
    watched = {
        (namespace, metric): (statistic, dimensions)
        for spec in ALARMS
        for namespace, metric, statistic, dimensions in watched_metrics(alarm_props(template, spec))
    }
    machine = watched_in(template).state_machine_arn
    stage = watched_in(template).api_stage
    service = {"service": SERVICE_NAME}
    assert watched[("LoopML", "DriftDetected")] == ("Sum", service)
    assert watched[("LoopML", "PerformanceDropped")] == ("Sum", service)
    assert watched[("LoopML", "UploadsQuarantined")] == ("Sum", service)
    assert watched[("LoopML", "LabelsQuarantined")] == ("Sum", service)
    assert watched[("LoopML", "CaptureErrors")] == ("Sum", service)
    assert watched[("AWS/States", "ExecutionsFailed")] == ("Sum", {"StateMachineArn": machine})
    assert watched[("AWS/States", "ExecutionsTimedOut")] == ("Sum", {"StateMachineArn": machine})
    assert watched[("AWS/ApiGateway", "5XXError")] == ("Sum", {"ApiName": API.name, "Stage": stage})
    assert watched[("AWS/ApiGateway", "Latency")] == ("p99", {"ApiName": API.name, "Stage": stage})
    throttled = {
        dimensions["FunctionName"]
        for spec in ALARMS
        for _, metric, _, dimensions in watched_metrics(alarm_props(template, spec))
        if metric == "Throttles"
    }
    assert throttled == {"${" + function_id(template, key) + "}" for key in FUNCTIONS}


def test_drift_alarms_notify_once_per_episode_of_hourly_checks(template: Template) -> None:
    for spec in (DRIFT_ALARM, PERFORMANCE_ALARM):
        alarm = alarm_props(template, spec)
        # Hourly checks, and any of the last two hours in drift keeps the alarm in ALARM: no second notification.
        assert alarm["Period"] == DRIFT_SCHEDULE.rate_minutes * 60 == 3600
        assert (alarm["DatapointsToAlarm"], alarm["EvaluationPeriods"]) == (1, 2)
        assert "OKActions" not in alarm and "InsufficientDataActions" not in alarm


def test_predict_latency_alarm_is_a_sustained_p99(template: Template) -> None:
    alarm = alarm_props(template, PREDICT_LATENCY_ALARM)
    assert (alarm["ExtendedStatistic"], alarm["Threshold"], alarm["ComparisonOperator"]) == (
        "p99",
        1000,
        "GreaterThanThreshold",
    )
    assert "Statistic" not in alarm
    assert (alarm["Period"], alarm["DatapointsToAlarm"], alarm["EvaluationPeriods"]) == (60, 3, 5)


def test_functions_emit_under_the_namespace_and_service_the_alarms_watch() -> None:
    """The functions emit with Powertools under the namespace and service the alarms and the dashboard name."""
    for spec in FUNCTIONS.values():
        environment = function_environment(NAMES, spec)
        assert environment["POWERTOOLS_METRICS_NAMESPACE"] == METRICS_NAMESPACE
        assert environment["POWERTOOLS_SERVICE_NAME"] == SERVICE_NAME


def test_every_application_metric_watched_is_one_a_function_emits() -> None:
    handlers = "\n".join((spec.code_dir / "handler.py").read_text() for spec in FUNCTIONS.values())
    emitted = set(re.findall(r'add_metric\(name="(\w+)"', handlers))
    # `Uploads{status}` and `Labels{status}`: one metric per upload outcome.
    prefixes = re.findall(r'add_metric\(name=f"(\w+)\{', handlers)
    emitted |= {prefix + status.capitalize() for prefix in prefixes for status in UploadStatus}
    watched = {metric for spec in ALARMS for metric in spec.metrics}
    watched |= {metric for graph in DASHBOARD.graphs for metric in graph.metrics}
    names = {metric.name for metric in watched if metric.source is MetricSource.SERVICE}
    assert {"DriftDetected", "PerformanceDropped", "UploadsQuarantined", "LabelsQuarantined", "CaptureErrors"} <= names
    assert names <= emitted


def test_dashboard_is_the_declared_one_and_graphs_every_alarmed_metric(template: Template) -> None:
    dashboard = template.props(template.one("AWS::CloudWatch::Dashboard", DashboardName=DASHBOARD.name))
    assert DASHBOARD.name == PREFIX
    body = flatten(dashboard["DashboardBody"])
    assert body == dashboard_body(DASHBOARD, watched_in(template))  # the very body the local cloud puts on moto
    widgets = json.loads(body)["widgets"]
    assert len(widgets) == len(DASHBOARD.graphs) and len(template.of_type("AWS::CloudWatch::Dashboard")) == 1
    graphed = {tuple(series[:-1]) for widget in widgets for series in widget["properties"]["metrics"]}
    for spec in ALARMS:
        for namespace, metric, _, dimensions in watched_metrics(alarm_props(template, spec)):
            if metric != "Invocations":  # the upload errors alarm's metric is graphed as UploadsError
                assert (namespace, metric, *(part for item in dimensions.items() for part in item)) in graphed
    assert ("LoopML", "UploadsError", "service", SERVICE_NAME) in graphed
    stats = {(series[1], series[-1]["stat"]) for widget in widgets for series in widget["properties"]["metrics"]}
    assert {("Latency", "p50"), ("Latency", "p99"), ("Predictions", "Sum"), ("4XXError", "Sum")} <= stats
    assert {("Uploads" + status, "Sum") for status in ("Accepted", "Quarantined", "Error")} <= stats
    assert {("ExecutionsSucceeded", "Sum"), ("ExecutionsFailed", "Sum"), ("Throttles", "Sum")} <= stats
    assert all(widget["properties"]["region"] == "${AWS::Region}" for widget in widgets)


# --- pipeline --------------------------------------------------------------------------------------------------------


def test_state_machine_definition_is_the_declared_asl(template: Template) -> None:
    machine = template.props(template.one("AWS::StepFunctions::StateMachine", StateMachineName=NAMES.state_machine))
    declared = json.loads(PIPELINE.definition_file.read_text())
    assert json.loads(machine["DefinitionString"]) == declared
    # CloudFormation substitutes each placeholder with the ARN of the function the declaration names.
    substitutions = {name: flatten(value) for name, value in machine["DefinitionSubstitutions"].items()}
    function_arns = {
        key: "${" + function_id(template, key) + ".Arn}" for key in PIPELINE.function_substitutions.values()
    }
    assert substitutions == {
        placeholder: function_arns[key] for placeholder, key in PIPELINE.function_substitutions.items()
    }
    deployed = machine["DefinitionString"]
    for placeholder, value in substitutions.items():
        deployed = deployed.replace("${" + placeholder + "}", value)
    rendered = json.loads(PIPELINE.render(function_arns))
    assert json.loads(deployed) == rendered
    for state_name, state in declared["States"].items():
        assert rendered["States"][state_name].get("Retry") == state.get("Retry")
        assert rendered["States"][state_name].get("Catch") == state.get("Catch")
    assert machine["LoggingConfiguration"]["Level"] == "ALL"
    assert machine["TracingConfiguration"] == {"Enabled": True}


def test_state_machine_role_invokes_only_the_pipeline_functions(template: Template) -> None:
    machine = template.one("AWS::StepFunctions::StateMachine", StateMachineName=NAMES.state_machine)
    role = flatten(template.props(machine)["RoleArn"]).removeprefix("${").removesuffix(".Arn}")
    permissions = permissions_of_role(template, role)
    invokes = {resource for action, resource in permissions if action.startswith("lambda:")}
    assert {a for a, _ in permissions if a.startswith("lambda:")} == {"lambda:InvokeFunction"}
    assert invokes == {"${" + function_id(template, key) + ".Arn}" for key in PIPELINE.function_substitutions.values()}
    assert {a.split(":")[0] for a, r in permissions if r == "*"} <= {"logs", "xray"}


# --- API -------------------------------------------------------------------------------------------------------------


def api_routes(template: Template) -> set[tuple[str, str]]:
    resources = template.of_type("AWS::ApiGateway::Resource")

    def path(resource_ref: Any) -> str:
        if "Fn::GetAtt" in resource_ref:  # the root resource
            return ""
        props = resources[resource_ref["Ref"]]["Properties"]
        return f"{path(props['ParentId'])}/{props['PathPart']}"

    return {
        (m["Properties"]["HttpMethod"], path(m["Properties"]["ResourceId"]))
        for m in template.of_type("AWS::ApiGateway::Method").values()
    }


def test_api_has_exactly_the_declared_routes(template: Template) -> None:
    assert api_routes(template) == {(route.method, route.path) for route in API.routes}
    predict = function_id(template, API.function)
    for method in template.of_type("AWS::ApiGateway::Method").values():
        props = method["Properties"]
        assert props["Integration"]["Type"] == "AWS_PROXY"
        assert f"${{{predict}.Arn}}" in flatten(props["Integration"]["Uri"])
        assert props["AuthorizationType"] == "AWS_IAM"
        assert "RequestValidatorId" in props


def test_api_stage_throttling_and_access_logs(template: Template) -> None:
    template.one("AWS::ApiGateway::RestApi", Name=API.name)
    stage = template.props(template.one("AWS::ApiGateway::Stage", StageName=API.stage))
    settings = {s["HttpMethod"] + s["ResourcePath"]: s for s in stage["MethodSettings"]}
    assert settings["*/*"]["ThrottlingRateLimit"] == API.throttle_rate_per_s
    assert settings["*/*"]["ThrottlingBurstLimit"] == API.throttle_burst
    assert stage["AccessLogSetting"]["DestinationArn"]
    assert stage["TracingEnabled"] is True


# --- the closed loop: schedule and upload trigger --------------------------------------------------------------------


def test_drift_schedule_runs_the_drift_function(template: Template) -> None:
    rule = template.one("AWS::Events::Rule", Name=f"{PREFIX}-{DRIFT_SCHEDULE.key}")
    props = template.props(rule)
    assert props["ScheduleExpression"] == f"rate({DRIFT_SCHEDULE.rate_minutes} minutes)" == "rate(60 minutes)"
    drift = function_id(template, DRIFT_SCHEDULE.function)
    assert [flatten(target["Arn"]) for target in props["Targets"]] == [f"${{{drift}.Arn}}"]
    template.one("AWS::Lambda::Permission", Principal="events.amazonaws.com", SourceArn=f"${{{rule}.Arn}}")


def test_uploads_trigger_validation_and_label_files_their_join(template: Template) -> None:
    assert (UPLOAD_TRIGGER.function, UPLOAD_TRIGGER.prefix, UPLOAD_TRIGGER.suffix) == (
        "validate_upload",
        "incoming/",
        "",
    )
    assert (LABELS_TRIGGER.function, LABELS_TRIGGER.prefix) == ("ingest_labels", "labels/")
    bucket = bucket_id(template, NAMES.data_bucket)
    configurations = template.props(bucket)["NotificationConfiguration"]["LambdaConfigurations"]
    assert len(configurations) == len(S3_TRIGGERS) == 3
    for trigger, configuration in zip(S3_TRIGGERS, configurations, strict=True):
        function = function_id(template, trigger.function)
        assert configuration["Event"] == "s3:ObjectCreated:*"
        assert flatten(configuration["Function"]) == f"${{{function}.Arn}}"
        # Every object under the prefix is handled, whatever its suffix: an unsupported one is quarantined, not missed.
        assert configuration["Filter"]["S3Key"]["Rules"] == [{"Name": "prefix", "Value": trigger.prefix}]
        [permission] = [
            lid
            for lid, resource in template.of_type("AWS::Lambda::Permission").items()
            if resource["Properties"].get("Principal") == "s3.amazonaws.com"
            and flatten(resource["Properties"]["FunctionName"]) == f"${{{function}.Arn}}"
        ]
        assert flatten(template.props(permission)["SourceArn"]) == bucket_arn(NAMES.data_bucket)
        assert permission in template.resources[bucket]["DependsOn"]
    assert "NotificationConfiguration" not in template.props(bucket_id(template, NAMES.artifact_bucket))


# --- cdk-nag and cfn-lint --------------------------------------------------------------------------------------------


def acknowledgments(synthesized: Synthesized) -> dict[tuple[str, str], str]:
    """(construct path, rule id) -> reason, for every acknowledgment in the app."""
    found = {}
    for construct in synthesized.app.node.find_all():
        for entry in construct.node.metadata:
            if entry.type == Validations.ACKNOWLEDGED_RULES_METADATA_KEY:
                for rule_id, reason in entry.data.items():
                    found[(construct.node.path, re.sub(r"^annotation::", "", rule_id, flags=re.IGNORECASE))] = reason
    return found


def test_cdk_nag_reports_no_unacknowledged_findings(synthesized: Synthesized) -> None:
    report = AwsSolutionsChecks().validate_scope(synthesized.app)
    assert [(v.rule_name, [r.construct_path for r in v.violating_resources]) for v in report.violations] == []
    assert report.success


def test_every_acknowledgment_has_a_reason_and_a_finding(
    synthesized: Synthesized, monkeypatch: pytest.MonkeyPatch
) -> None:
    acknowledged = acknowledgments(synthesized)
    assert acknowledged
    for (path, rule_id), reason in acknowledged.items():
        assert rule_id.startswith("AwsSolutions-"), (path, rule_id)
        assert len(reason.split()) >= 8, (path, rule_id, reason)
    # The same app without any acknowledgment must report every acknowledged finding: none is stale.
    monkeypatch.setattr(nag, "acknowledge", lambda *args, **kwargs: None)
    bare_app, _ = create_app(SKIP_BUNDLING)
    findings = {
        (str(resource.construct_path), violation.rule_name)
        for violation in AwsSolutionsChecks().validate_scope(bare_app).violations
        for resource in violation.violating_resources
    }
    for path, rule_id in acknowledged:
        assert any(r == rule_id and (p == path or p.startswith(path + "/")) for p, r in findings), (path, rule_id)


def test_cfn_lint_reports_no_errors(synthesized: Synthesized) -> None:
    template_text = Path(synthesized.template_path).read_text()
    matches = lint(template_text, config=ManualArgs(regions=["us-east-1", "eu-west-1"]))
    errors = [f"{m.rule.id} {m.message} @ {'/'.join(map(str, m.path))}" for m in matches if m.rule.id.startswith("E")]
    assert errors == []
