"""Batch scoring in the synthesized stack: the declared ASL with its Distributed Map, a state machine role that may run
its own child executions and read the chunk lists and nothing else, the S3 trigger, and the batch functions' roles
and layers."""

from __future__ import annotations

import json

import pytest
from cfn_template import NAMES, Template, arn, flatten

from infra.declaration import (
    BATCH,
    BATCH_FAILED_ALARM,
    BATCH_MAP_LABEL,
    BATCH_START_FAILURES,
    BATCH_THROTTLES_ALARM,
    BATCH_TRIGGER,
    BATCH_WORK_PREFIX,
    BATCH_WORK_RETENTION_DAYS,
    FUNCTIONS,
    LAYERS,
    PREFIX,
    THROTTLES_ALARM,
    Layer,
)

pytestmark = pytest.mark.xdist_group("cdk")  # the app is synthesized once per worker

XRAY_AND_LOGS = {"xray", "logs"}
MACHINE = NAMES.batch_state_machine


def function_id(template: Template, key: str) -> str:
    return template.one("AWS::Lambda::Function", FunctionName=FUNCTIONS[key].physical_name())


def machine_id(template: Template) -> str:
    return template.one("AWS::StepFunctions::StateMachine", StateMachineName=MACHINE)


def permissions(template: Template, role: str) -> set[tuple[str, str]]:
    found = set()
    for policy in template.of_type("AWS::IAM::Policy").values():
        if {"Ref": role} not in policy["Properties"]["Roles"]:
            continue
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            assert statement["Effect"] == "Allow"
            # Only registry writes carry a condition: their partitions (test_registry_write_scopes.py).
            assert "Condition" not in statement or list(statement["Condition"]) == ["ForAllValues:StringLike"]
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            found |= {(action, flatten(resource)) for action in actions for resource in resources}
    return found


def role_of(template: Template, logical_id: str) -> str:
    """The logical id of the role a function (`Role`) or a state machine (`RoleArn`) assumes."""
    props = template.props(logical_id)
    return flatten(props.get("RoleArn") or props["Role"]).removeprefix("${").removesuffix(".Arn}")


def test_the_batch_state_machine_is_the_declared_asl_with_a_distributed_map(template: Template) -> None:
    machine = template.props(machine_id(template))
    declared = json.loads(BATCH.definition_file.read_text())
    assert json.loads(machine["DefinitionString"]) == declared
    substitutions = {name: flatten(value) for name, value in machine["DefinitionSubstitutions"].items()}
    assert substitutions == {
        placeholder: "${" + function_id(template, key) + ".Arn}"
        for placeholder, key in BATCH.function_substitutions.items()
    }
    score = declared["States"]["ScoreChunks"]
    assert score["Type"] == "Map" and score["Label"] == BATCH_MAP_LABEL
    assert score["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    assert score["ItemReader"]["Resource"] == "arn:aws:states:::s3:getObject"
    assert score["ItemReader"]["ReaderConfig"] == {"InputType": "JSON"}
    assert score["ResultPath"] is None  # the chunks' results stay in S3: the map's output never nears 256 KB
    assert "ToleratedFailurePercentage" not in score and "ToleratedFailureCount" not in score  # none tolerated
    [task] = score["ItemProcessor"]["States"].values()
    assert task["Parameters"]["FunctionName"] == "${ScoreFunctionArn}"
    # A step that fails after its retries is caught: RecordFailure (batch_finish's failed mode) writes the failed
    # report, then the execution fails; so does a failed outcome of Finish itself
    states = declared["States"]
    for step, named in (("Plan", "PlanFailed"), ("ScoreChunks", "ScoringFailed"), ("Finish", "FinishFailed")):
        [catch] = states[step]["Catch"]
        assert catch == {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": named}
        passed = {key: value for key, value in states[named].items() if key != "Comment"}
        assert passed == {"Type": "Pass", "Result": step, "ResultPath": "$.failed_step", "Next": "RecordFailure"}
    record = states["RecordFailure"]
    assert record["Parameters"]["FunctionName"] == "${FinishFunctionArn}"
    assert record["Parameters"]["Payload"]["mode"] == "failed" and record["Next"] == "Failed"
    assert record["Catch"][0]["Next"] == "FailedUnreported" and states["FailedUnreported"]["Type"] == "Fail"
    assert states["Outcome"]["Choices"][0]["Next"] == "Failed"
    assert states["Failed"] == {**states["Failed"], "Type": "Fail", "Error": "BatchFailed", "CausePath": "$.summary"}
    assert machine["LoggingConfiguration"]["Level"] == "ALL" and machine["TracingConfiguration"] == {"Enabled": True}


def test_the_state_machine_role_runs_its_own_children_and_reads_only_the_chunk_lists(template: Template) -> None:
    role = role_of(template, machine_id(template))
    granted = permissions(template, role)
    scoped = {(a, r) for a, r in granted if a.split(":")[0] not in XRAY_AND_LOGS}
    assert scoped == {
        *(
            ("lambda:InvokeFunction", "${" + function_id(template, key) + ".Arn}")
            for key in BATCH.function_substitutions.values()
        ),
        ("states:StartExecution", arn("states", f"stateMachine:{MACHINE}")),
        ("states:DescribeExecution", arn("states", f"execution:{MACHINE}:*")),
        ("states:StopExecution", arn("states", f"execution:{MACHINE}:*")),
        ("states:RedriveExecution", arn("states", f"execution:{MACHINE}/{BATCH_MAP_LABEL}:*")),
        ("s3:GetObject", f"arn:${{AWS::Partition}}:s3:::{NAMES.artifact_bucket}/{BATCH_WORK_PREFIX}*"),
    }
    assert {r for a, r in granted if a.split(":")[0] in XRAY_AND_LOGS} == {"*"}
    # The training pipeline's role gains none of this
    pipeline = role_of(template, template.one("AWS::StepFunctions::StateMachine", StateMachineName=NAMES.state_machine))
    assert not {a for a, _ in permissions(template, pipeline) if a.startswith(("states:", "s3:"))}


def test_uploads_under_batch_start_batches_and_only_the_start_function_may_start_them(template: Template) -> None:
    bucket = template.one("AWS::S3::Bucket", BucketName=NAMES.data_bucket)
    configurations = template.props(bucket)["NotificationConfiguration"]["LambdaConfigurations"]
    start = function_id(template, BATCH_TRIGGER.function)
    [configuration] = [c for c in configurations if flatten(c["Function"]) == "${" + start + ".Arn}"]
    assert configuration["Filter"]["S3Key"]["Rules"] == [{"Name": "prefix", "Value": "batch/"}]
    assert configuration["Event"] == "s3:ObjectCreated:*"
    starters = {
        key
        for key in FUNCTIONS
        for action, resource in permissions(template, role_of(template, function_id(template, key)))
        if action == "states:StartExecution" and resource == arn("states", f"stateMachine:{MACHINE}")
    }
    assert starters == {"batch_start"}
    start_permissions = permissions(template, role_of(template, start))
    # and hand an event it could not start a batch for to upload_failed, after its retries (BATCH_START_FAILURES)
    failed = arn("lambda", f"function:{FUNCTIONS[BATCH_START_FAILURES.on_failure].physical_name()}")
    assert {(a, r) for a, r in start_permissions if not a.startswith(("logs:", "xray:"))} == {
        ("states:StartExecution", arn("states", f"stateMachine:{MACHINE}")),
        ("states:DescribeExecution", arn("states", f"execution:{MACHINE}:*")),
        ("lambda:InvokeFunction", failed),
    }
    environment = template.props(start)["Environment"]["Variables"]
    assert flatten(environment["BATCH_STATE_MACHINE_ARN"]) == arn("states", f"stateMachine:{MACHINE}").replace(
        "${AWS::Partition}", "aws"
    )


def test_the_batch_functions_reach_only_their_buckets(template: Template) -> None:
    def s3_resources(key: str) -> set[str]:
        granted = permissions(template, role_of(template, function_id(template, key)))
        return {resource for action, resource in granted if action.startswith("s3:")}

    data, artifacts = (f"arn:${{AWS::Partition}}:s3:::{name}" for name in (NAMES.data_bucket, NAMES.artifact_bucket))
    assert s3_resources("batch_start") == set()
    assert s3_resources("batch_score") == {data, f"{data}/*", artifacts, f"{artifacts}/*"}
    for key in ("batch_plan", "batch_score", "batch_finish"):
        writes = {
            r for a, r in permissions(template, role_of(template, function_id(template, key))) if a == "s3:PutObject"
        }
        assert writes == {f"{artifacts}/*" if key != "batch_finish" else f"{data}/*"}
    registry_readers = {
        key
        for key in ("batch_start", "batch_plan", "batch_score", "batch_finish")
        if any(
            a.startswith("dynamodb:") for a, _ in permissions(template, role_of(template, function_id(template, key)))
        )
    }
    assert registry_readers == {"batch_plan"}  # the plan pins the model version; no step writes the registry


def test_scoring_has_one_layer_with_pyarrow_and_onnxruntime_sharing_numpy(template: Template) -> None:
    score = template.props(function_id(template, "batch_score"))
    layers = [template.props(layer["Ref"])["LayerName"] for layer in score["Layers"]]
    assert layers == [f"{PREFIX}-core", f"{PREFIX}-scoring"]
    requirements = {r.split("==")[0] for r in LAYERS[Layer.SCORING].requirements}
    assert requirements == {"pyarrow", "onnxruntime", "numpy"}
    pins = {r for spec in (LAYERS[Layer.DATA], LAYERS[Layer.INFERENCE]) for r in spec.requirements}
    assert set(LAYERS[Layer.SCORING].requirements) <= pins  # the very versions validation and serving run
    assert score["MemorySize"] == FUNCTIONS["batch_score"].memory_mb and score["Timeout"] == 900


def test_batch_work_files_expire_and_batches_have_their_alarms(template: Template) -> None:
    artifacts = template.props(template.one("AWS::S3::Bucket", BucketName=NAMES.artifact_bucket))
    rules = {rule.get("Prefix"): rule for rule in artifacts["LifecycleConfiguration"]["Rules"]}
    assert rules[BATCH_WORK_PREFIX]["ExpirationInDays"] == BATCH_WORK_RETENTION_DAYS
    assert rules[BATCH_WORK_PREFIX]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 1}
    watched = {metric.function for metric in BATCH_THROTTLES_ALARM.metrics}
    assert watched == {"batch_start", "batch_plan", "batch_score", "batch_finish"}
    assert watched.isdisjoint(metric.function for metric in THROTTLES_ALARM.metrics)
    template.one("AWS::CloudWatch::Alarm", AlarmName=BATCH_THROTTLES_ALARM.physical_name())
    # A failed batch (a step crashed after its retries) alarms; a refused file is the uploader's to fix
    failed = template.props(template.one("AWS::CloudWatch::Alarm", AlarmName=BATCH_FAILED_ALARM.physical_name()))
    assert (failed["Namespace"], failed["MetricName"]) == ("LoopML", "BatchesFailed")
    finish = (FUNCTIONS["batch_finish"].code_dir / "handler.py").read_text()
    assert 'add_metric(name="BatchesFailed"' in finish


def test_the_stack_outputs_the_batch_state_machine(template: Template) -> None:
    outputs = template.body["Outputs"]
    [output] = [value for key, value in outputs.items() if key.startswith("BatchStateMachineArn")]
    assert flatten(output["Value"]) == "${" + machine_id(template) + "}"
