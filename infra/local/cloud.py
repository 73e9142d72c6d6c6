"""The local cloud: LoopML's declaration provisioned on moto, with the real handlers run in-process.

Everything here is built from `infra/declaration.py`, the same declaration the CDK app deploys: the same names,
handlers, environment, S3 notification, schedule and the very same state machine definition, which moto's Step
Functions interpreter executes. Each Lambda invocation moto makes (from Step Functions, the Invoke API or an S3
notification) runs the declared handler in this process with the environment moto holds for that function.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import queue
import sys
import threading
import time
import traceback
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from infra import declaration as decl
from loopml_core.adapters.pipeline import Execution, StepFunctionsRunner

ACCOUNT = "123456789012"
REGION = "us-east-1"
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}
# No X-Ray daemon runs locally; everything else in a function's environment is exactly what moto holds for it.
LOCAL_ONLY_ENV = {"POWERTOOLS_TRACE_DISABLED": "true"}
ALERT_INBOX_QUEUE = f"{decl.PREFIX}-alerts-inbox"
TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}


@dataclass
class Invocation:
    function: str
    seconds: float
    errored: bool


class LambdaContext:
    """The attributes of the Lambda context object that handlers and Powertools read."""

    def __init__(self, function_name: str, memory_mb: int, timeout_s: int) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function_name}"
        self.memory_limit_in_mb = memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = time.strftime("%Y/%m/%d/[$LATEST]") + uuid.uuid4().hex
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _zip_directory(directory: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(directory.rglob("*.py")):
            archive.write(path, path.relative_to(directory).as_posix())
    return buffer.getvalue()


class HandlerRunner:
    """Loads each declared handler once, as Lambda would from its code directory, and runs it in-process."""

    def __init__(self, log_stream: io.TextIOBase | Any) -> None:
        self._modules: dict[str, ModuleType] = {}
        self._by_physical_name = {spec.physical_name(): spec for spec in decl.FUNCTIONS.values()}
        # moto is not thread-safe and Step Functions runs steps in threads: one invocation at a time, re-entrant
        # because a handler's own AWS calls may trigger another function (an S3 notification) in the same thread.
        self._lock = threading.RLock()
        self.log_stream = log_stream
        self.invocations: list[Invocation] = []

    def knows(self, function_name: str) -> bool:
        return function_name in self._by_physical_name

    def _module(self, spec: decl.FunctionSpec) -> ModuleType:
        if spec.key not in self._modules:
            module_name, _ = spec.handler.rsplit(".", 1)
            path = spec.code_dir / f"{module_name.replace('.', '/')}.py"
            unique = f"loopml_functions.{spec.key}.{module_name}"
            loader_spec = importlib.util.spec_from_file_location(unique, path)
            assert loader_spec and loader_spec.loader, f"cannot load {path}"
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[unique] = module
            loader_spec.loader.exec_module(module)
            self._modules[spec.key] = module
        return self._modules[spec.key]

    def run(self, function_name: str, environment: dict[str, str], event: Any) -> tuple[str, bool, str]:
        spec = self._by_physical_name[function_name]
        with self._lock, _environment({**environment, **LOCAL_ONLY_ENV, "AWS_LAMBDA_FUNCTION_NAME": function_name}):
            started = time.perf_counter()
            output = io.StringIO()
            errored = False
            try:
                with contextlib.redirect_stdout(output):
                    handler: Callable[..., Any] = getattr(self._module(spec), spec.handler.rsplit(".", 1)[1])
                    payload = json.loads(event) if isinstance(event, str | bytes) else event
                    result = handler(payload, LambdaContext(function_name, spec.memory_mb, spec.timeout_s))
                reply = json.dumps(result)
            except Exception as error:
                errored = True
                reply = json.dumps(
                    {
                        "errorMessage": str(error),
                        "errorType": type(error).__name__,
                        "stackTrace": traceback.format_exception(error)[-5:],
                    }
                )
            logs = output.getvalue()
            self.log_stream.write(logs)
            if errored:
                self.log_stream.write(f"[{function_name}] ERROR {reply}\n")
            self.log_stream.flush()
            self.invocations.append(Invocation(spec.key, time.perf_counter() - started, errored))
            return reply, errored, logs


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _aws_shaped_s3_event(original: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """moto's S3 notification omits fields AWS always sends (versionId, sequencer, identities); add them so the
    handler parses exactly the shape it gets on AWS."""

    def shaped(event_name: str, bucket: Any, key: Any, notification_id: str) -> dict[str, Any]:
        event = original(event_name, bucket, key, notification_id)
        for record in event["Records"]:
            record["userIdentity"] = {"principalId": "AWS:LOCAL"}
            record["requestParameters"] = {"sourceIPAddress": "127.0.0.1"}
            record["responseElements"] = {
                "x-amz-request-id": uuid.uuid4().hex[:16].upper(),
                "x-amz-id-2": uuid.uuid4().hex,
            }
            record["s3"]["bucket"]["ownerIdentity"] = {"principalId": "LOCAL"}
            record["s3"]["object"]["sequencer"] = f"{time.time_ns():X}"
            version_id = getattr(key, "version_id", None)
            if version_id and version_id != "null":
                record["s3"]["object"]["versionId"] = version_id
        return event

    return shaped


class LocalCloud:
    """Start with `with LocalCloud() as cloud:`; everything is gone when the block ends."""

    def __init__(self, state_dir: Path | None = None) -> None:
        self.names = decl.Names(account=ACCOUNT, region=REGION)
        self.state_dir = state_dir or Path(os.environ.get("LOOPML_HOME", decl.ROOT / ".loopml"))
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.state_dir / "functions.log"
        self._log = self.log_path.open("a", encoding="utf-8")
        self.runner = HandlerRunner(self._log)
        self._mock: Any = None
        self._saved_env: contextlib.ExitStack | None = None
        self._patches: list[tuple[Any, str, Any]] = []
        self._notifications: queue.Queue[tuple[Any, ...] | None] = queue.Queue()
        self._notifier = threading.Thread(target=self._deliver_notifications, name="s3-notifications", daemon=True)

    # -- lifecycle ------------------------------------------------------------------------------------------------

    def __enter__(self) -> LocalCloud:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        from moto import mock_aws

        self._saved_env = contextlib.ExitStack()
        self._saved_env.enter_context(_environment(FAKE_CREDENTIALS))
        self._mock = mock_aws(config={"stepfunctions": {"execute_state_machine": True}})
        self._mock.start()
        self._install_patches()
        self._notifier.start()
        self.provision()

    def stop(self) -> None:
        self.wait_for_idle(timeout=30)
        self._notifications.put(None)
        self._notifier.join(timeout=30)
        for owner, attribute, original in reversed(self._patches):
            setattr(owner, attribute, original)
        self._patches.clear()
        if self._mock is not None:
            self._mock.stop()
            self._mock = None
        if self._saved_env is not None:
            self._saved_env.close()
        self._log.close()

    def _patch(self, owner: Any, attribute: str, replacement: Any) -> None:
        self._patches.append((owner, attribute, getattr(owner, attribute)))
        setattr(owner, attribute, replacement)

    def _install_patches(self) -> None:
        from moto.awslambda.models import LambdaFunction
        from moto.s3 import notifications

        runner = self.runner
        original_invoke = LambdaFunction._invoke_lambda

        def invoke_in_process(function: Any, event: Any = None) -> tuple[str, bool, str]:
            if not runner.knows(function.function_name):
                return original_invoke(function, event)
            return runner.run(function.function_name, dict(function.environment_vars), event)

        self._patch(LambdaFunction, "_invoke_lambda", invoke_in_process)
        self._patch(notifications, "_get_s3_event", _aws_shaped_s3_event(notifications._get_s3_event))
        # S3 invokes notification targets asynchronously, after the upload has returned; moto would run them inside
        # the PUT (and then overwrite tags the handler set on the new object), so queue them instead.
        deliver = notifications._invoke_awslambda
        self._patch(notifications, "_invoke_awslambda", lambda *args: self._notifications.put((deliver, *args)))

    def _deliver_notifications(self) -> None:
        while (item := self._notifications.get()) is not None:
            deliver, *args = item
            try:
                deliver(*args)
            finally:
                self._notifications.task_done()

    # -- provisioning from the declaration ------------------------------------------------------------------------

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(service, region_name=REGION)

    def provision(self) -> None:
        s3, iam, lam = self.client("s3"), self.client("iam"), self.client("lambda")
        for bucket in (self.names.data_bucket, self.names.artifact_bucket):
            s3.create_bucket(Bucket=bucket)
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        self.client("dynamodb").create_table(
            TableName=self.names.registry_table,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        sns, sqs = self.client("sns"), self.client("sqs")
        topic_arn = sns.create_topic(Name=self.names.alert_topic)["TopicArn"]
        inbox_url = sqs.create_queue(QueueName=ALERT_INBOX_QUEUE)["QueueUrl"]
        inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=inbox_arn)

        trust = json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
                ],
            }
        )
        for spec in decl.FUNCTIONS.values():
            role = iam.create_role(RoleName=f"{spec.physical_name()}-role", AssumeRolePolicyDocument=trust)
            lam.create_function(
                FunctionName=spec.physical_name(),
                Runtime=decl.LAMBDA_RUNTIME,
                Role=role["Role"]["Arn"],
                Handler=spec.handler,
                Code={"ZipFile": _zip_directory(spec.code_dir)},
                Description=spec.description,
                Timeout=spec.timeout_s,
                MemorySize=spec.memory_mb,
                Environment={"Variables": decl.function_environment(self.names, spec)},
            )

        function_key, prefix, suffix = decl.UPLOAD_TRIGGER
        s3.put_bucket_notification_configuration(
            Bucket=self.names.data_bucket,
            NotificationConfiguration={
                "LambdaFunctionConfigurations": [
                    {
                        "LambdaFunctionArn": self.names.function_arn(function_key),
                        "Events": ["s3:ObjectCreated:*"],
                        "Filter": {
                            "Key": {
                                "FilterRules": [
                                    {"Name": "prefix", "Value": prefix},
                                    {"Name": "suffix", "Value": suffix},
                                ]
                            }
                        },
                    }
                ]
            },
        )

        sfn_role = iam.create_role(RoleName=f"{decl.PIPELINE.physical_name()}-role", AssumeRolePolicyDocument=trust)
        arns = {key: self.names.function_arn(key) for key in decl.FUNCTIONS}
        self.client("stepfunctions").create_state_machine(
            name=decl.PIPELINE.physical_name(),
            definition=decl.PIPELINE.render(arns),
            roleArn=sfn_role["Role"]["Arn"],
        )
        # The rule is declared for parity; moto delivers no scheduled events, so `fire_schedule` sends them.
        self.client("events").put_rule(
            Name=f"{decl.PREFIX}-{decl.DRIFT_SCHEDULE.key}",
            ScheduleExpression=decl.DRIFT_SCHEDULE.expression,
            Description=decl.DRIFT_SCHEDULE.description,
        )

    # -- using it ---------------------------------------------------------------------------------------------------

    def invoke(self, function_key: str, event: dict[str, Any]) -> dict[str, Any]:
        """Invoke a declared function through the Lambda API; raises when the handler failed."""
        reply = self.client("lambda").invoke(
            FunctionName=decl.FUNCTIONS[function_key].physical_name(), Payload=json.dumps(event).encode()
        )
        payload = json.loads(reply["Payload"].read() or b"null")
        if reply.get("FunctionError"):
            raise RuntimeError(f"{function_key} failed: {payload.get('errorType')}: {payload.get('errorMessage')}")
        return payload

    def fire_schedule(self, detail: dict[str, Any] | None = None) -> dict[str, Any]:
        """Deliver what EventBridge delivers on the drift schedule's tick (optionally narrowed to one model)."""
        schedule = decl.DRIFT_SCHEDULE
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": ACCOUNT,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "region": REGION,
            "resources": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{decl.PREFIX}-{schedule.key}"],
            "detail": detail or {},
        }
        return self.invoke(schedule.function, event)

    def pipeline(self) -> StepFunctionsRunner:
        """The same Step Functions adapter the functions use, pointed at the local state machine."""
        return StepFunctionsRunner(self.names.state_machine_arn(), self.client("stepfunctions"))

    def wait_for_execution(self, name: str, timeout: float = 300, poll: float = 0.2) -> Execution:
        deadline = time.monotonic() + timeout
        while True:
            execution = self.pipeline().describe(name)
            if execution.status in TERMINAL:
                return execution
            if time.monotonic() > deadline:
                raise TimeoutError(f"execution {name} still {execution.status} after {timeout:.0f}s")
            time.sleep(poll)

    def pipeline_executions(self) -> list[str]:
        """Execution names, newest first."""
        return [e.name for e in self.pipeline().executions()]

    def wait_for_idle(self, timeout: float = 300) -> None:
        """Wait until queued S3 notifications are handled and no pipeline execution is running."""
        if self._mock is None:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (
            self._notifications.unfinished_tasks or self.pipeline().executions("RUNNING")
        ):
            time.sleep(0.1)

    def alerts(self) -> list[dict[str, Any]]:
        """Alerts published to the SNS topic, read from the local inbox queue subscribed to it."""
        sqs = self.client("sqs")
        url = sqs.get_queue_url(QueueName=ALERT_INBOX_QUEUE)["QueueUrl"]
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        for message in messages:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return [json.loads(m["Body"]) for m in messages]

    def info(self, aws_endpoint: str | None = None, api_url: str | None = None) -> dict[str, Any]:
        return {
            "aws_endpoint": aws_endpoint,
            "api_url": api_url,
            "region": REGION,
            "account": ACCOUNT,
            "data_bucket": self.names.data_bucket,
            "artifact_bucket": self.names.artifact_bucket,
            "registry_table": self.names.registry_table,
            "state_machine_arn": self.names.state_machine_arn(),
            "alert_topic_arn": self.names.alert_topic_arn(),
            "functions": {key: spec.physical_name() for key, spec in decl.FUNCTIONS.items()},
            "logs": str(self.log_path),
        }
