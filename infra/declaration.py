"""The one declaration of LoopML's resources.

Both backends read this module: the CDK app (`infra/cdk`) turns it into CloudFormation, and the local cloud
(`infra/local`) turns it into moto resources with the same names, running the same handlers in-process. Nothing
here imports CDK or boto3, so either side can use it without dragging in the other.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any

from loopml_core.capture import CAPTURE_MARKER, CAPTURE_PREFIX
from loopml_core.contract import RETENTION_DAYS
from loopml_core.uploads import LABELS as LABELS_PREFIX

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS_DIR = ROOT / "functions"
LAYERS_DIR = ROOT / "layers"
PIPELINE_ASL = Path(__file__).resolve().parent / "statemachine" / "pipeline.asl.json"

PREFIX = "loopml"
LAMBDA_RUNTIME = "python3.12"
SERVICE_NAME = "loopml"


class Access(StrEnum):
    READ = "read"
    WRITE = "write"
    READ_WRITE = "read_write"
    TAG = "tag"  # read and replace objects' tags only: neither their content nor new objects


class Layer(StrEnum):
    """Lambda layers. `core` is the loopml_core package with Powertools and pydantic; the others add heavy libraries."""

    CORE = "core"
    DATA = "data"  # pyarrow + numpy: streamed validation of CSV, gzip-compressed CSV and Parquet
    TRAINING = "training"  # scikit-learn + pandas + fastparquet + skl2onnx: training and ONNX export
    INFERENCE = "inference"  # onnxruntime + numpy only: serving, evaluation and drift


@dataclass(frozen=True)
class LayerSpec:
    key: Layer
    description: str
    requirements: tuple[str, ...]
    ships_core_package: bool = False


@dataclass(frozen=True)
class Grants:
    """What a function may touch; CDK turns this into one least-privilege role per function."""

    data_bucket: Access | None = None
    artifact_bucket: Access | None = None
    registry_table: Access | None = None
    start_pipeline: bool = False
    publish_alerts: bool = False


@dataclass(frozen=True)
class FunctionSpec:
    key: str
    description: str
    layers: tuple[Layer, ...]
    grants: Grants
    memory_mb: int = 512
    timeout_s: int = 60
    handler: str = "handler.lambda_handler"
    environment: tuple[tuple[str, str], ...] = ()  # settings of this function alone, beside the common ones

    @property
    def code_dir(self) -> Path:
        return FUNCTIONS_DIR / self.key

    def physical_name(self) -> str:
        return f"{PREFIX}-{self.key.replace('_', '-')}"


@dataclass(frozen=True)
class AsyncInvokeSpec:
    """How Lambda handles a function's asynchronous invocations (an S3 notification is one).

    A failed invocation is retried `retry_attempts` times; then Lambda sends a destination record (the request, the
    error and the attempt count) to the `on_failure` function instead of dropping the event.
    """

    function: str
    retry_attempts: int
    on_failure: str


@dataclass(frozen=True)
class S3TriggerSpec:
    """S3 ObjectCreated events under `prefix` of the data bucket invoke `function` (asynchronously)."""

    function: str
    prefix: str
    suffix: str = ""  # empty: every key under the prefix


@dataclass(frozen=True)
class AlarmSpec:
    """A CloudWatch alarm on one function's AWS/Lambda metric, in alarm when the statistic over a period reaches
    `threshold` (for `evaluation_periods` periods); its action publishes to the alert topic."""

    key: str
    description: str
    function: str
    metric: str
    statistic: str = "Sum"
    threshold: float = 1
    period_s: int = 300
    evaluation_periods: int = 1

    def physical_name(self) -> str:
        return f"{PREFIX}-{self.key}"


@dataclass(frozen=True)
class CaptureDeliverySpec:
    """Captured traffic from a function's log stream to S3, batched by a managed service, never by the request.

    A subscription filter on the function's log group sends the lines holding `filter_term` to an Amazon Data
    Firehose stream, which decompresses the CloudWatch Logs records, keeps each message, partitions messages by the
    JSON fields in `partition_keys`, buffers each partition up to `buffer_mb` or `buffer_s`, and writes it gzipped
    to `prefix` in the artifact bucket. The lifecycle rule of each retention class expires what is under it.
    """

    key: str
    function: str
    filter_term: str
    partition_keys: tuple[str, ...]
    prefix: str
    error_prefix: str
    buffer_mb: int
    buffer_s: int
    retention_classes: tuple[int, ...]

    def physical_name(self) -> str:
        return f"{PREFIX}-{self.key}"

    @property
    def filter_pattern(self) -> str:
        """A CloudWatch Logs term pattern: the quoted term anywhere in the event's message."""
        return f'"{self.filter_term}"'

    @property
    def partition_query(self) -> str:
        """The jq expression Firehose's inline parsing evaluates on each message for its partition keys."""
        return "{" + ", ".join(f"{key}: .{key}" for key in self.partition_keys) + "}"

    @property
    def s3_prefix(self) -> str:
        keys = "".join(f"!{{partitionKeyFromQuery:{key}}}/" for key in self.partition_keys)
        return f"{self.prefix}{keys}!{{timestamp:yyyy/MM/dd/HH}}/"

    def retention_prefixes(self) -> list[tuple[str, int]]:
        """(prefix, days) of each retention class: everything under the prefix expires after that many days."""
        return [(f"{self.prefix}{days}d/", days) for days in self.retention_classes]

    @property
    def s3_error_prefix(self) -> str:
        return f"{self.error_prefix}!{{firehose:error-output-type}}/!{{timestamp:yyyy/MM/dd}}/"


def capture_destination(spec: CaptureDeliverySpec, bucket_arn: str, role_arn: str) -> dict[str, Any]:
    """The Firehose ExtendedS3 destination of `spec`, in the shape both the Firehose API (the local cloud) and
    CloudFormation (`ExtendedS3DestinationConfiguration`) take: one definition for both backends."""

    def processor(kind: str, **parameters: str) -> dict[str, Any]:
        return {
            "Type": kind,
            "Parameters": [{"ParameterName": name, "ParameterValue": value} for name, value in parameters.items()],
        }

    return {
        "BucketARN": bucket_arn,
        "RoleARN": role_arn,
        "Prefix": spec.s3_prefix,
        "ErrorOutputPrefix": spec.s3_error_prefix,
        "BufferingHints": {"SizeInMBs": spec.buffer_mb, "IntervalInSeconds": spec.buffer_s},
        "CompressionFormat": "GZIP",
        "DynamicPartitioningConfiguration": {"Enabled": True, "RetryOptions": {"DurationInSeconds": 300}},
        "ProcessingConfiguration": {
            "Enabled": True,
            "Processors": [
                processor("Decompression", CompressionFormat="GZIP"),
                processor("CloudWatchLogProcessing", DataMessageExtraction="true"),
                processor(
                    "MetadataExtraction", MetadataExtractionQuery=spec.partition_query, JsonParsingEngine="JQ-1.6"
                ),
                processor("AppendDelimiterToRecord"),
            ],
        },
    }


def capture_lifecycle_rules(spec: CaptureDeliverySpec) -> list[dict[str, Any]]:
    """The retention classes as S3 lifecycle rules (API shape; CDK builds the same from `retention_prefixes`)."""
    return [
        {
            "ID": f"{spec.key}-{days}d",
            "Filter": {"Prefix": prefix},
            "Status": "Enabled",
            "Expiration": {"Days": days},
            # The bucket is versioned: an expired capture becomes a noncurrent version, gone a day later.
            "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
        }
        for prefix, days in spec.retention_prefixes()
    ]


@dataclass(frozen=True)
class Route:
    method: str
    path: str


@dataclass(frozen=True)
class ApiSpec:
    name: str
    function: str
    routes: tuple[Route, ...]
    stage: str = "v1"
    throttle_rate_per_s: int = 100
    throttle_burst: int = 200


@dataclass(frozen=True)
class ScheduleSpec:
    key: str
    function: str
    rate_minutes: int
    description: str

    @property
    def expression(self) -> str:
        """The EventBridge schedule expression, in the declared unit (CDK's Schedule.rate would say `1 hour`)."""
        return f"rate({self.rate_minutes} minute{'' if self.rate_minutes == 1 else 's'})"


@dataclass(frozen=True)
class StateMachineSpec:
    key: str
    definition_file: Path
    # ASL placeholder -> function key, substituted with the function's ARN by each backend.
    function_substitutions: dict[str, str] = field(default_factory=dict)

    def physical_name(self) -> str:
        return f"{PREFIX}-{self.key}"

    def definition_template(self) -> str:
        return self.definition_file.read_text()

    def render(self, function_arns: dict[str, str]) -> str:
        """The ASL with every `${Placeholder}` replaced by the ARN of the function it names."""
        text = self.definition_template()
        for placeholder, function_key in self.function_substitutions.items():
            text = text.replace("${" + placeholder + "}", function_arns[function_key])
        json.loads(text)  # a definition that is not JSON after substitution is a bug in the template
        return text


@dataclass(frozen=True)
class Names:
    """Physical names. Account and region may be CDK tokens; locally they are moto's account and region."""

    account: str
    region: str

    @property
    def data_bucket(self) -> str:
        return f"{PREFIX}-data-{self.account}-{self.region}"

    @property
    def artifact_bucket(self) -> str:
        return f"{PREFIX}-artifacts-{self.account}-{self.region}"

    @property
    def registry_table(self) -> str:
        return f"{PREFIX}-registry"

    @property
    def alert_topic(self) -> str:
        return f"{PREFIX}-alerts"

    @property
    def state_machine(self) -> str:
        return PIPELINE.physical_name()

    def state_machine_arn(self) -> str:
        return f"arn:aws:states:{self.region}:{self.account}:stateMachine:{self.state_machine}"

    def alert_topic_arn(self) -> str:
        return f"arn:aws:sns:{self.region}:{self.account}:{self.alert_topic}"

    def function_arn(self, key: str) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account}:function:{FUNCTIONS[key].physical_name()}"


# S3 layout of the data bucket. Uploads land in `incoming/`; nothing is ever deleted.
INCOMING_PREFIX = "incoming/"
DATASETS_PREFIX = "datasets/"
QUARANTINE_PREFIX = "quarantine/"
CONTRACTS_PREFIX = "contracts/"
CAPTURE_ERRORS_PREFIX = "capture-errors/"
MODELS_PREFIX = "models/"
REPORTS_PREFIX = "reports/"

CAPTURE_DELIVERY_BUFFER_S = 300  # Firehose's buffering interval for captured traffic

# Uploads larger than this are quarantined unread (the validation function's LOOPML_MAX_UPLOAD_BYTES).
MAX_UPLOAD_BYTES = 5 * 1024**3

LAYERS: dict[Layer, LayerSpec] = {
    spec.key: spec
    for spec in (
        LayerSpec(
            Layer.CORE,
            "loopml_core with Powertools and pydantic",
            ("aws-lambda-powertools[tracer,parser]==3.37.0", "pydantic==2.14.3", "pyyaml==6.0.3"),
            ships_core_package=True,
        ),
        LayerSpec(
            Layer.DATA, "pyarrow and numpy for streamed contract validation", ("pyarrow==26.0.1", "numpy==2.4.6")
        ),
        LayerSpec(
            Layer.TRAINING,
            "scikit-learn, pandas, fastparquet and skl2onnx for training and ONNX export",
            (
                "scikit-learn==1.9.1",
                "pandas==3.1.1",
                # pyarrow does not fit beside scikit-learn and scipy under Lambda's 250 MB; fastparquet does.
                "fastparquet==2026.9.0",
                "skl2onnx==1.20.0",
                "onnx==1.23.2",
                "protobuf==6.33.6",
            ),
        ),
        LayerSpec(Layer.INFERENCE, "onnxruntime and numpy only", ("onnxruntime==1.32.0", "numpy==2.4.6")),
    )
}

FUNCTIONS: dict[str, FunctionSpec] = {
    spec.key: spec
    for spec in (
        FunctionSpec(
            "validate_upload",
            "Validates an upload against its dataset contract, then versions it or quarantines it",
            (Layer.CORE, Layer.DATA),
            Grants(data_bucket=Access.READ_WRITE, registry_table=Access.READ_WRITE, start_pipeline=True),
            # Validation streams the object, so memory stays flat whatever its size; 2048 MB buys CPU (Lambda gives
            # a second vCPU share above 1769 MB), and 15 minutes covers a 5 GB upload at the measured throughput.
            memory_mb=2048,
            timeout_s=900,
            environment=(("LOOPML_MAX_UPLOAD_BYTES", str(MAX_UPLOAD_BYTES)),),
        ),
        FunctionSpec(
            "train_model",
            "Trains a scikit-learn pipeline and exports it to ONNX with its preprocessing inside the graph",
            (Layer.CORE, Layer.TRAINING),
            Grants(data_bucket=Access.READ, artifact_bucket=Access.READ_WRITE, registry_table=Access.READ),
            memory_mb=2048,
            timeout_s=600,
        ),
        FunctionSpec(
            "evaluate_model",
            "Checks ONNX parity with scikit-learn and scores candidate and champion on the same holdout",
            (Layer.CORE, Layer.INFERENCE),
            Grants(artifact_bucket=Access.READ, registry_table=Access.READ),
            memory_mb=1024,
            timeout_s=300,
        ),
        FunctionSpec(
            "register_model",
            "Registers the model version and moves the champion alias when the candidate wins",
            (Layer.CORE,),
            Grants(registry_table=Access.READ_WRITE),
        ),
        FunctionSpec(
            "record_failure",
            "Records a failed pipeline run in the registry and the audit trail; the champion is untouched",
            (Layer.CORE,),
            Grants(registry_table=Access.READ_WRITE),
        ),
        FunctionSpec(
            "upload_failed",
            "Gives an upload whose validation crashed or timed out after its retries the error outcome, and alerts",
            (Layer.CORE,),
            # Tagging reads the object's current tags first (a tag write replaces them all); nothing else of the data.
            Grants(data_bucket=Access.TAG, registry_table=Access.READ_WRITE, publish_alerts=True),
        ),
        FunctionSpec(
            "ingest_labels",
            "Joins an uploaded label file with the captured predictions it names: live performance per model version",
            (Layer.CORE, Layer.DATA),
            # Reads the label file, tags it and quarantines a bad one; reads captured traffic to join it.
            Grants(data_bucket=Access.READ_WRITE, artifact_bucket=Access.READ, registry_table=Access.READ_WRITE),
            memory_mb=1024,
            timeout_s=900,
        ),
        FunctionSpec(
            "predict",
            "Serves predictions from the champion with onnxruntime and captures what it sees",
            (Layer.CORE, Layer.INFERENCE),
            # Reads model artefacts only: captures leave through its log stream (CAPTURE_DELIVERY), not S3.
            Grants(artifact_bucket=Access.READ, registry_table=Access.READ),
            memory_mb=1024,
            timeout_s=29,
        ),
        FunctionSpec(
            "drift_check",
            "Compares captured inputs and predictions with the training baseline; alerts and retrains on drift",
            # pyarrow reads the gzipped capture batches a block at a time; no onnxruntime is needed to compare them.
            (Layer.CORE, Layer.DATA),
            # Writes its HTML reports beside what it reads.
            Grants(
                artifact_bucket=Access.READ_WRITE,
                registry_table=Access.READ_WRITE,
                start_pipeline=True,
                publish_alerts=True,
            ),
            memory_mb=1024,
            timeout_s=300,
            # An hour of captures is complete once Firehose's buffer for it must have been written, and then some.
            environment=(("LOOPML_CAPTURE_SETTLE_SECONDS", str(CAPTURE_DELIVERY_BUFFER_S + 600)),),
        ),
    )
}

PIPELINE = StateMachineSpec(
    key="training-pipeline",
    definition_file=PIPELINE_ASL,
    function_substitutions={
        "TrainFunctionArn": "train_model",
        "EvaluateFunctionArn": "evaluate_model",
        "RegisterFunctionArn": "register_model",
        "RecordFailureFunctionArn": "record_failure",
    },
)

API = ApiSpec(
    name=f"{PREFIX}-inference",
    function="predict",
    routes=(
        Route("GET", "/health"),
        Route("GET", "/v1/models/{name}"),
        Route("POST", "/v1/models/{name}/predict"),
    ),
)

CAPTURE_DELIVERY = CaptureDeliverySpec(
    key="captures",
    function="predict",
    filter_term=CAPTURE_MARKER,
    partition_keys=("retention", "model"),
    prefix=CAPTURE_PREFIX,
    error_prefix=CAPTURE_ERRORS_PREFIX,
    # Dynamic partitioning needs at least 64 MB; five minutes bounds how late a capture reaches S3.
    buffer_mb=64,
    buffer_s=CAPTURE_DELIVERY_BUFFER_S,
    retention_classes=RETENTION_DAYS,  # the contract's `monitoring.retention_days` picks one
)

DRIFT_SCHEDULE = ScheduleSpec(
    key="drift-schedule",
    function="drift_check",
    rate_minutes=60,
    description="Runs the drift check for every model with a champion",
)

# Every object under these prefixes of the data bucket is handled, whatever its suffix: an unsupported format is
# quarantined with a reason, never ignored.
UPLOAD_TRIGGER = S3TriggerSpec("validate_upload", INCOMING_PREFIX)
LABELS_TRIGGER = S3TriggerSpec("ingest_labels", LABELS_PREFIX)
S3_TRIGGERS = (UPLOAD_TRIGGER, LABELS_TRIGGER)

# Every upload ends with an outcome: when its function crashes or times out on every attempt, the upload gets
# `error`. Lambda's default is 2 retries; declared so both backends retry the same number of times.
VALIDATION_FAILURES = AsyncInvokeSpec(function="validate_upload", retry_attempts=2, on_failure="upload_failed")
LABEL_FAILURES = AsyncInvokeSpec(function="ingest_labels", retry_attempts=2, on_failure="upload_failed")
ASYNC_INVOCATIONS: dict[str, AsyncInvokeSpec] = {spec.function: spec for spec in (VALIDATION_FAILURES, LABEL_FAILURES)}

# Invocations of the on-failure function count uploads whose validation failed, whether or not that function then
# manages to record them: the alarm still fires if it crashes too (say the registry is unreachable), which an
# application metric emitted by the function would not.
UPLOAD_ERRORS_ALARM = AlarmSpec(
    key="upload-errors",
    description="An upload's validation failed after Lambda's retries: it has the error outcome, nothing registered",
    function=VALIDATION_FAILURES.on_failure,
    metric="Invocations",
)


@cache
def code_version() -> str:
    """The commit the functions are built from (recorded on every model version), or `unversioned` outside git."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unversioned"
    return sha or "unversioned"


def function_environment(names: Names, spec: FunctionSpec) -> dict[str, str]:
    """Environment of a function: identical on AWS and locally, apart from the names' account and region."""
    env = {
        "LOOPML_CODE_VERSION": code_version(),
        "POWERTOOLS_SERVICE_NAME": SERVICE_NAME,
        "POWERTOOLS_METRICS_NAMESPACE": "LoopML",
        "LOG_LEVEL": "INFO",
        "DATA_BUCKET": names.data_bucket,
        "ARTIFACT_BUCKET": names.artifact_bucket,
        "REGISTRY_TABLE": names.registry_table,
        **dict(spec.environment),
    }
    if spec.grants.start_pipeline:
        env["STATE_MACHINE_ARN"] = names.state_machine_arn()
    if spec.grants.publish_alerts:
        env["ALERT_TOPIC_ARN"] = names.alert_topic_arn()
    return env
