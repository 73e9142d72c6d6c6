"""The local cloud: LoopML's declaration provisioned on moto, with the real handlers run in-process.

Everything here is built from `infra/declaration.py`, the same declaration the CDK app deploys: the same names,
handlers, environment, S3 notification, schedule and the very same state machine definition, which moto's Step
Functions interpreter executes. Each Lambda invocation moto makes (from Step Functions, the Invoke API or an S3
notification) runs the declared handler in this process with the environment moto holds for that function. An S3
notification is an asynchronous invocation, handled as Lambda does: retried on error as the function's event invoke
configuration says, then sent to its on-failure destination.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import queue
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from infra import declaration as decl
from infra.local.delivery import FirehoseS3Delivery, matches_filter
from infra.local.rest_api import provision_rest_api
from infra.local.runner import ACCOUNT, REGION, HandlerRunner, ThreadRoutedEnviron, environment_overlay
from loopml_core.adapters.pipeline import Execution, StepFunctionsRunner

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}
ALERT_INBOX_QUEUE = f"{decl.PREFIX}-alerts-inbox"
TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}
DEFAULT_ASYNC_RETRIES = 2  # Lambda's, for a function without an event invoke configuration
LOG_EVENTS_KEPT = 1_000  # per log stream; CloudWatch keeps a log group's events for its retention instead


def provision_audit_bucket(s3: Any, bucket: str) -> None:
    """The audit chain's checkpoints, as CDK builds them: Object Lock (which versions the bucket) with the declared
    default retention, and the policy that denies every principal deletes. moto enforces the lock."""
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    retention = {"Mode": decl.AUDIT_LOCK.mode.value, "Days": decl.AUDIT_LOCK.retention_days}
    s3.put_object_lock_configuration(
        Bucket=bucket,
        ObjectLockConfiguration={"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": retention}},
    )
    policy = {"Version": "2012-10-17", "Statement": decl.audit_bucket_policy_statements(f"arn:aws:s3:::{bucket}")}
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))


def _zip_directory(directory: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(directory.rglob("*.py")):
            archive.write(path, path.relative_to(directory).as_posix())
    return buffer.getvalue()


@contextlib.contextmanager
def _environ_routed_per_thread() -> Iterator[None]:
    """Several functions run at once here, each with its own environment: see `ThreadRoutedEnviron`."""
    process = os.environ
    os.environ = ThreadRoutedEnviron(process)  # type: ignore[assignment]  # noqa: B003 (wraps it, keeps it)
    try:
        yield
    finally:
        os.environ = process  # noqa: B003


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


def _copy_with_whole_object_checksum(original: Callable[..., None]) -> Callable[..., None]:
    """A copy is a new, single-part object, and S3 gives it a checksum of its whole content. moto gives it the
    source's checksum value instead, which for a multipart upload is a composite checksum (a checksum of the parts'
    checksums), and drops the composite type: GetObject then serves it as the copy's full-object checksum, and
    botocore's response checksum validation fails with FlexibleChecksumError on every copy of a multipart upload."""
    from moto.s3.utils import compute_checksum

    def copy_object(backend: Any, src_key: Any, dest_bucket_name: str, dest_key_name: str, **kwargs: Any) -> None:
        original(backend, src_key, dest_bucket_name, dest_key_name, **kwargs)
        copied = backend.get_object(dest_bucket_name, dest_key_name)
        if copied is not None and copied.checksum_algorithm:
            copied.checksum_value = compute_checksum(copied.value, copied.checksum_algorithm).decode()
            copied.checksum_type = "FULL_OBJECT"
            copied.checksum_parts = None

    return copy_object


def _one_event_per_multipart_upload(
    complete: Callable[..., Any], send_event: Callable[..., None]
) -> tuple[Callable[..., Any], Callable[..., None]]:
    """S3 sends one ObjectCreated:CompleteMultipartUpload event once a multipart upload's object is complete. moto
    also sends ObjectCreated:Put from inside the completion, before the object has its checksum and tags, and then
    replaces its tags: validation would run twice and could lose its outcome tag. Drop that inner event."""
    from moto.s3.notifications import S3NotificationEvent

    completing = threading.local()

    def complete_multipart_upload(backend: Any, *args: Any, **kwargs: Any) -> Any:
        completing.active = True
        try:
            return complete(backend, *args, **kwargs)
        finally:
            completing.active = False

    def send(account_id: str, event_name: Any, bucket: Any, key: Any) -> None:
        if getattr(completing, "active", False) and event_name == S3NotificationEvent.OBJECT_CREATED_PUT_EVENT:
            return
        send_event(account_id, event_name, bucket, key)

    return complete_multipart_upload, send


class LocalCloud:
    """Start with `with LocalCloud() as cloud:`; everything is gone when the block ends."""

    def __init__(self, state_dir: Path | None = None) -> None:
        self.names = decl.Names(account=ACCOUNT, region=REGION)
        self.state_dir = state_dir or Path(os.environ.get("LOOPML_HOME", decl.ROOT / ".loopml"))
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.state_dir / "functions.log"
        self._log = self.log_path.open("a", encoding="utf-8")
        self.runner = HandlerRunner(self._log, self.ship_logs)
        self.delivery = FirehoseS3Delivery(self._write_delivered_object)
        self._log_streams: dict[str, str] = {}  # function name -> its log stream (one container per function)
        self._mock: Any = None
        self._saved_env: contextlib.ExitStack | None = None
        self._patches: list[tuple[Any, str, Any]] = []
        self._notifications: queue.Queue[tuple[Any, ...] | None] = queue.Queue()
        self._notifier = threading.Thread(target=self._deliver_notifications, name="s3-notifications", daemon=True)
        self._clients: dict[str, Any] = {}
        self._clients_lock = threading.Lock()

    # -- lifecycle ------------------------------------------------------------------------------------------------

    def __enter__(self) -> LocalCloud:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        from moto import mock_aws

        self._saved_env = contextlib.ExitStack()
        self._saved_env.enter_context(environment_overlay(FAKE_CREDENTIALS))
        self._saved_env.enter_context(_environ_routed_per_thread())
        self._mock = mock_aws(config={"stepfunctions": {"execute_state_machine": True}})
        self._mock.start()
        self._install_patches()
        self._notifier.start()
        self.provision()

    def stop(self, drain_timeout: float = 30) -> None:
        """Stop, once queued S3 notifications and running executions are done or `drain_timeout` has passed."""
        self.wait_for_idle(timeout=drain_timeout)
        if self._mock is not None:
            with self.runner.moto_lock:
                self.delivery.flush()
        self._notifications.put(None)
        self._notifier.join(timeout=drain_timeout)
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
        from moto.core.botocore_stubber import BotocoreStubber
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication
        from moto.s3 import notifications
        from moto.s3.models import S3Backend

        runner = self.runner
        # Every request into moto, in-process (boto3 through moto's stubber) or over HTTP (`loopml local up`).
        self._patch(BotocoreStubber, "process_request", runner.moto_lock.guarding(BotocoreStubber.process_request))
        self._patch(
            DomainDispatcherApplication,
            "__call__",
            runner.moto_lock.guarding(DomainDispatcherApplication.__call__),
        )
        original_invoke = LambdaFunction._invoke_lambda

        # The functions that read captured traffic: the check, and the label join.
        readers = {decl.FUNCTIONS[key].physical_name() for key in (decl.DRIFT_SCHEDULE.function, "ingest_labels")}

        def invoke_in_process(function: Any, event: Any = None) -> tuple[str, bool, str]:
            if not runner.knows(function.function_name):
                return original_invoke(function, event)
            if function.function_name in readers:
                # Locally no buffering interval passes between traffic and what reads it: deliver what Firehose holds.
                with runner.moto_lock:
                    self.delivery.flush()
            return runner.run(function.function_name, dict(function.environment_vars), event)

        self._patch(LambdaFunction, "_invoke_lambda", invoke_in_process)
        self._patch(notifications, "_get_s3_event", _aws_shaped_s3_event(notifications._get_s3_event))
        self._patch(S3Backend, "copy_object", _copy_with_whole_object_checksum(S3Backend.copy_object))
        complete, send_event = _one_event_per_multipart_upload(
            S3Backend.complete_multipart_upload, notifications.send_event
        )
        self._patch(S3Backend, "complete_multipart_upload", complete)
        self._patch(notifications, "send_event", send_event)

        # S3 invokes notification targets asynchronously, after the upload has returned; moto would run them inside
        # the PUT (and then overwrite tags the handler set on the new object), so queue them instead.
        def enqueue(account_id: str, event_body: Any, fn_arn: str, region_name: str) -> None:
            self._notifications.put((fn_arn, event_body))

        self._patch(notifications, "_invoke_awslambda", enqueue)
        self._install_delivery_patches()

    def _install_delivery_patches(self) -> None:
        """CloudWatch Logs subscriptions apply their filter pattern; Firehose runs its stream's processors, buffers
        and partitions (moto does neither): see `infra.local.delivery`."""
        from moto.firehose.models import FirehoseBackend
        from moto.logs.models import LogStream

        delivery = self.delivery
        send_to_subscription = LogStream._send_log_events

        def send_matching(stream: Any, service: str, destination_arn: str, filter_name: str, log_events: Any) -> None:
            pattern = stream.log_group.subscription_filters[filter_name].filter_pattern
            matching = [event for event in log_events if matches_filter(pattern, event["message"])]
            if matching:
                send_to_subscription(stream, service, destination_arn, filter_name, matching)
            del stream.events[:-LOG_EVENTS_KEPT]

        firehose_receives = FirehoseBackend.send_log_event

        def firehose_processes(
            backend: Any, stream_arn: str, filter_name: str, group: str, log_stream: str, log_events: Any
        ) -> None:
            stream = backend.lookup_name_from_arn(stream_arn)
            config = stream.destinations[0].get("ExtendedS3") if stream is not None else None
            if config is None or not delivery.handles(config):
                firehose_receives(backend, stream_arn, filter_name, group, log_stream, log_events)
                return
            messages = [event["message"] for event in log_events]
            delivery.receive(stream.delivery_stream_name, stream.version_id, config, messages)

        self._patch(LogStream, "_send_log_events", send_matching)
        self._patch(FirehoseBackend, "send_log_event", firehose_processes)

    def ship_logs(self, function_name: str, text: str) -> None:
        """What Lambda does with what a function prints: events in its log group, where one is declared."""
        from moto.logs.models import logs_backends

        stream = self._log_streams.get(function_name)
        if stream is None:
            return
        now = int(time.time() * 1000)
        events = [{"timestamp": now, "message": line} for line in text.splitlines() if line]
        if events:
            with self.runner.moto_lock:
                logs_backends[ACCOUNT][REGION].put_log_events(f"/aws/lambda/{function_name}", stream, events)

    def _write_delivered_object(self, bucket: str, key: str, data: bytes) -> None:
        from moto.s3.models import s3_backends

        s3_backends[ACCOUNT]["aws"].put_object(bucket, key, data)

    def flush_deliveries(self) -> int:
        """Deliver what Firehose holds in its buffers now (the buffering interval passing); returns objects written."""
        with self.runner.moto_lock:
            return self.delivery.flush()

    def _deliver_notifications(self) -> None:
        while (item := self._notifications.get()) is not None:
            function_arn, event = item
            try:
                self.invoke_async(function_arn, event)
            except Exception as error:  # like S3, drop what cannot be delivered and go on with the next notification
                self._log.write(f"[s3-notifications] cannot deliver to {function_arn}: {error!r}\n")
                self._log.flush()
            finally:
                self._notifications.task_done()

    # -- provisioning from the declaration ------------------------------------------------------------------------

    def client(self, service: str) -> Any:
        """A boto3 client of the local cloud, made once per service (they are thread-safe, and slow to make)."""
        with self._clients_lock:
            if service not in self._clients:
                import boto3

                self._clients[service] = boto3.client(service, region_name=REGION)
            return self._clients[service]

    def invoke_proxied(self, function_key: str, event: dict[str, Any]) -> dict[str, Any]:
        """What API Gateway's Lambda proxy integration does: run the function on the event with the configuration
        Lambda holds for it, and return its reply; raises when the handler failed. The same handler, environment and
        log stream as `invoke`, without the Invoke API's request and response serialization around it."""
        from moto.awslambda.models import lambda_backends

        name = decl.FUNCTIONS[function_key].physical_name()
        with self.runner.moto_lock:
            environment = dict(lambda_backends[ACCOUNT][REGION].get_function(name).environment_vars)
        reply, errored, _ = self.runner.run(name, environment, event)
        payload: dict[str, Any] = json.loads(reply)
        if errored:
            raise RuntimeError(f"{function_key} failed: {payload.get('errorType')}: {payload.get('errorMessage')}")
        return payload

    def provision(self) -> None:
        s3, iam, lam = self.client("s3"), self.client("iam"), self.client("lambda")
        for bucket in (self.names.data_bucket, self.names.artifact_bucket):
            s3.create_bucket(Bucket=bucket)
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        provision_audit_bucket(s3, self.names.audit_bucket)
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

        for invocation in decl.ASYNC_INVOCATIONS.values():
            lam.put_function_event_invoke_config(
                FunctionName=decl.FUNCTIONS[invocation.function].physical_name(),
                MaximumRetryAttempts=invocation.retry_attempts,
                DestinationConfig={"OnFailure": {"Destination": self.names.function_arn(invocation.on_failure)}},
            )
        # Declared for parity: moto records no metrics, so no alarm fires locally; alerts come only from the functions.
        cloudwatch = self.client("cloudwatch")
        watched = decl.WatchedResources.named(self.names)
        for alarm in decl.ALARMS:
            cloudwatch.put_metric_alarm(**decl.metric_alarm(alarm, watched, [topic_arn]))
        cloudwatch.put_dashboard(
            DashboardName=decl.DASHBOARD.name, DashboardBody=decl.dashboard_body(decl.DASHBOARD, watched)
        )

        s3.put_bucket_notification_configuration(
            Bucket=self.names.data_bucket,
            NotificationConfiguration={
                "LambdaFunctionConfigurations": [
                    {
                        "LambdaFunctionArn": self.names.function_arn(trigger.function),
                        "Events": ["s3:ObjectCreated:*"],
                        # An empty suffix matches every key: it is left out, as S3 takes no empty filter value.
                        "Filter": {
                            "Key": {
                                "FilterRules": [
                                    {"Name": name, "Value": value}
                                    for name, value in (("prefix", trigger.prefix), ("suffix", trigger.suffix))
                                    if value
                                ]
                            }
                        },
                    }
                    for trigger in decl.S3_TRIGGERS
                ]
            },
        )

        self._provision_capture_delivery(trust)
        provision_rest_api(self.client("apigateway"), self.names.function_arn(decl.API.function), REGION)

        arns = {key: self.names.function_arn(key) for key in decl.FUNCTIONS}
        # The very definitions CDK deploys, rendered with the local functions' ARNs: the batch state machine's
        # Distributed Map, its ItemReader and child executions run on moto's interpreter as on AWS.
        for machine in (decl.PIPELINE, decl.BATCH):
            sfn_role = iam.create_role(RoleName=f"{machine.physical_name()}-role", AssumeRolePolicyDocument=trust)
            self.client("stepfunctions").create_state_machine(
                name=machine.physical_name(), definition=machine.render(arns), roleArn=sfn_role["Role"]["Arn"]
            )
        # The rule is declared for parity; moto delivers no scheduled events, so `fire_schedule` sends them.
        self.client("events").put_rule(
            Name=f"{decl.PREFIX}-{decl.DRIFT_SCHEDULE.key}",
            ScheduleExpression=decl.DRIFT_SCHEDULE.expression,
            Description=decl.DRIFT_SCHEDULE.description,
        )

    def _provision_capture_delivery(self, lambda_trust: str) -> None:
        spec = decl.CAPTURE_DELIVERY
        function_name = decl.FUNCTIONS[spec.function].physical_name()
        group = f"/aws/lambda/{function_name}"
        logs, iam, firehose = self.client("logs"), self.client("iam"), self.client("firehose")
        logs.create_log_group(logGroupName=group)
        stream = time.strftime("%Y/%m/%d/[$LATEST]") + uuid.uuid4().hex
        logs.create_log_stream(logGroupName=group, logStreamName=stream)
        self._log_streams[function_name] = stream
        role = iam.create_role(RoleName=f"{spec.physical_name()}-delivery-role", AssumeRolePolicyDocument=lambda_trust)
        bucket_arn = f"arn:aws:s3:::{self.names.artifact_bucket}"
        stream_arn = firehose.create_delivery_stream(
            DeliveryStreamName=spec.physical_name(),
            DeliveryStreamType="DirectPut",
            ExtendedS3DestinationConfiguration=decl.capture_destination(spec, bucket_arn, role["Role"]["Arn"]),
        )["DeliveryStreamARN"]
        logs.put_subscription_filter(
            logGroupName=group,
            filterName=spec.physical_name(),
            filterPattern=spec.filter_pattern,
            destinationArn=stream_arn,
            roleArn=role["Role"]["Arn"],
        )
        self.client("s3").put_bucket_lifecycle_configuration(
            Bucket=self.names.artifact_bucket,
            LifecycleConfiguration={"Rules": decl.artifact_lifecycle_rules(spec)},
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

    def invoke_async(self, function: str, event: dict[str, Any]) -> None:
        """What Lambda does with an asynchronous invocation: run the function; on an error retry it as its event invoke
        configuration says; when every attempt failed, send the destination record to its on-failure destination
        (itself invoked asynchronously), or drop the event if there is none. Retries follow at once, not after
        Lambda's backoff of a minute or two; an event's maximum age never runs out here."""
        lam = self.client("lambda")
        try:
            config = lam.get_function_event_invoke_config(FunctionName=function)
        except lam.exceptions.ResourceNotFoundException:
            config = {}
        attempts = 1 + config.get("MaximumRetryAttempts", DEFAULT_ASYNC_RETRIES)
        for _attempt in range(attempts):
            reply = lam.invoke(FunctionName=function, Payload=json.dumps(event).encode())
            payload = json.loads(reply["Payload"].read() or b"null")
            if not reply.get("FunctionError"):
                return
        destination = config.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
        if not destination:
            return
        if ":lambda:" not in destination:
            raise NotImplementedError(
                f"the local cloud sends on-failure records to Lambda functions, not {destination}"
            )
        record = {
            "version": "1.0",
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": f"{config['FunctionArn']}:$LATEST",
                "condition": "RetriesExhausted",
                "approximateInvokeCount": attempts,
            },
            "requestPayload": event,
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "responsePayload": payload,
        }
        self.invoke_async(destination, record)

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

    def batches(self) -> StepFunctionsRunner:
        """The Step Functions adapter the batch start function uses, pointed at the local batch state machine."""
        return StepFunctionsRunner(self.names.batch_state_machine_arn(), self.client("stepfunctions"))

    def wait_for_execution(
        self, name: str, timeout: float = 300, poll: float = 0.2, runner: StepFunctionsRunner | None = None
    ) -> Execution:
        """Wait for an execution of the training pipeline (or of `runner`'s state machine) to end."""
        runner = runner or self.pipeline()
        deadline = time.monotonic() + timeout
        while True:
            execution = runner.describe(name)
            if execution.status in TERMINAL:
                return execution
            if time.monotonic() > deadline:
                raise TimeoutError(f"execution {name} still {execution.status} after {timeout:.0f}s")
            time.sleep(poll)

    def wait_for_batch(self, name: str, timeout: float = 300) -> Execution:
        """Wait for a batch scoring execution to end; it may not exist yet while its S3 notification is queued."""
        deadline = time.monotonic() + timeout
        stepfunctions = self.client("stepfunctions")
        while True:
            try:
                return self.wait_for_execution(name, max(0.0, deadline - time.monotonic()), runner=self.batches())
            except stepfunctions.exceptions.ExecutionDoesNotExist:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no batch execution {name} after {timeout:.0f}s") from None
                time.sleep(0.1)

    def pipeline_executions(self) -> list[str]:
        """Execution names, newest first."""
        return [e.name for e in self.pipeline().executions()]

    def wait_for_idle(self, timeout: float = 300) -> None:
        """Wait until queued S3 notifications are handled and no pipeline or batch execution is running."""
        if self._mock is None:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (
            self._notifications.unfinished_tasks
            or self.pipeline().executions("RUNNING")
            or self.batches().executions("RUNNING")
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
            "audit_bucket": self.names.audit_bucket,
            "registry_table": self.names.registry_table,
            "state_machine_arn": self.names.state_machine_arn(),
            "batch_state_machine_arn": self.names.batch_state_machine_arn(),
            "alert_topic_arn": self.names.alert_topic_arn(),
            "functions": {key: spec.physical_name() for key, spec in decl.FUNCTIONS.items()},
            "logs": str(self.log_path),
        }
