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

from loopml_core.adapters.events import DEFAULT_BUS as EVENT_BUS
from loopml_core.adapters.events import EVENT_BUS_ENV
from loopml_core.audit_anchor import AUDIT_BUCKET_ENV
from loopml_core.audit_anchor import CHECKPOINT_PREFIX as AUDIT_CHECKPOINT_PREFIX
from loopml_core.batch.layout import BATCH as BATCH_PREFIX
from loopml_core.batch.layout import INPUT as BATCH_INPUT
from loopml_core.batch.layout import OUTPUT as BATCH_OUTPUT
from loopml_core.batch.layout import WORK as BATCH_WORK_PREFIX
from loopml_core.capture import CAPTURE_MARKER, CAPTURE_PREFIX
from loopml_core.contract import RETENTION_DAYS
from loopml_core.models import UploadStatus
from loopml_core.registry import AUDIT_PK, DATASETS_INDEX_PK, MODELS_INDEX_PK, OUTBOX_PK
from loopml_core.uploads import LABELS as LABELS_PREFIX
from loopml_core.uploads import PENDING_LABELS

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS_DIR = ROOT / "functions"
LAYERS_DIR = ROOT / "layers"
PIPELINE_ASL = Path(__file__).resolve().parent / "statemachine" / "pipeline.asl.json"
BATCH_ASL = Path(__file__).resolve().parent / "statemachine" / "batch.asl.json"

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
    # pyarrow + numpy + onnxruntime: batch scoring reads CSV and Parquet and runs the model in one function. The data
    # and inference layers together would ship numpy twice and pass Lambda's 250 MB; one layer ships it once.
    SCORING = "scoring"


@dataclass(frozen=True)
class LayerSpec:
    key: Layer
    description: str
    requirements: tuple[str, ...]
    ships_core_package: bool = False


class RegistryItems(StrEnum):
    """The registry table's partition keys (`pk`, loopml_core.registry), as IAM `StringLike` patterns of the
    `dynamodb:LeadingKeys` condition key: who may write under which partition."""

    AUDIT = AUDIT_PK  # the hash-chained audit records and their HEAD: every commit writes here
    DATASETS_INDEX = DATASETS_INDEX_PK  # one item per declared dataset (declare_dataset, the CLI's)
    DATASET = "DATASET#*"  # a dataset: meta, contract versions, versions, content hashes, every upload's outcome
    MODELS_INDEX = MODELS_INDEX_PK  # one item per registered model: description and tags
    MODEL = "MODEL#*"  # a model: meta, versions, pipeline runs, aliases (champion, challenger...), monitoring state
    PERFORMANCE = "PERF#*"  # live performance counts per model version and day, from label files
    OUTBOX = OUTBOX_PK  # alerts and registry events recorded with their change and not published yet


@dataclass(frozen=True)
class Grants:
    """What a function may touch; CDK turns this into one least-privilege role per function."""

    data_bucket: Access | None = None
    artifact_bucket: Access | None = None
    # Reads are table-wide; writes (READ_WRITE) only under the partitions in registry_writes and registry_deletes.
    registry_table: Access | None = None
    # The partitions this function puts items under (dynamodb:PutItem, also as a TransactWriteItems Put) and deletes
    # items from (dynamodb:DeleteItem): IAM refuses any other partition key (dynamodb:LeadingKeys). Every registry
    # commit writes its audit records and the chain's HEAD in the same transaction, so every writer has AUDIT.
    registry_writes: tuple[RegistryItems, ...] = ()
    registry_deletes: tuple[RegistryItems, ...] = ()
    start_pipeline: bool = False
    start_batch: bool = False  # start (and describe) executions of the batch scoring state machine
    publish_alerts: bool = False
    # Put registry events (model version and alias changes) on the account's default EventBridge bus; such a
    # function also writes them to the registry's OUTBOX with the change, and deletes them once published.
    publish_events: bool = False
    # Put (never delete, never read) audit checkpoints under AUDIT_CHECKPOINT_PREFIX of the audit bucket: given to
    # exactly the functions that write the registry, whose every commit checkpoints the audit chain's head.
    audit_checkpoints: bool = False

    def __post_init__(self) -> None:
        writes = self.registry_table in (Access.WRITE, Access.READ_WRITE)
        if writes != bool(self.registry_writes):
            raise ValueError("a function that writes the registry names the partitions it writes, and only it does")
        if self.registry_writes and RegistryItems.AUDIT not in self.registry_writes:
            raise ValueError("every registry commit appends to the audit chain: a writer must be granted AUDIT")
        if self.registry_deletes and not writes:
            raise ValueError("only a registry writer deletes registry items")
        if self.audit_checkpoints != writes:
            raise ValueError("exactly the registry writers checkpoint the audit chain after their commits")
        outbox = RegistryItems.OUTBOX in self.registry_writes and RegistryItems.OUTBOX in self.registry_deletes
        if self.publish_events and not outbox:
            raise ValueError("a function that publishes registry events writes them to the outbox and deletes them")


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


METRICS_NAMESPACE = "LoopML"  # where Powertools puts the functions' own metrics (POWERTOOLS_METRICS_NAMESPACE)
# CloudWatch's own statistics; any other (p99, tm90…) is an extended statistic, which alarms take in another field.
STATISTICS = frozenset({"SampleCount", "Average", "Sum", "Minimum", "Maximum"})
MAX_ALARM_METRICS = 10  # a hard CloudWatch limit on the metrics one metric-math alarm reads


class MetricSource(StrEnum):
    """What a metric is about, which fixes its namespace and its dimensions."""

    SERVICE = "service"  # the functions' own metrics (Powertools EMF), with the one dimension `service`
    FUNCTION = "function"  # AWS/Lambda, of one function
    PIPELINE = "pipeline"  # AWS/States, of the training pipeline's state machine
    API = "api"  # AWS/ApiGateway, of the inference API's stage


@dataclass(frozen=True)
class WatchedResources:
    """The resources metrics are about, as a backend names them: physical names on moto; in CloudFormation,
    references to the resources themselves, so each alarm watches the very resource the template deploys."""

    region: str
    function_names: dict[str, str]  # function key -> FunctionName
    state_machine_arn: str
    api_name: str
    api_stage: str

    @classmethod
    def named(cls, names: Names) -> WatchedResources:
        return cls(
            region=names.region,
            function_names={key: spec.physical_name() for key, spec in FUNCTIONS.items()},
            state_machine_arn=names.state_machine_arn(),
            api_name=API.name,
            api_stage=API.stage,
        )


@dataclass(frozen=True)
class MetricSpec:
    """A CloudWatch metric, its dimensions named symbolically: each backend supplies the resources' names."""

    source: MetricSource
    name: str
    function: str | None = None  # the function key, for MetricSource.FUNCTION

    def __post_init__(self) -> None:
        if (self.source is MetricSource.FUNCTION) != (self.function is not None):
            raise ValueError(f"{self.name}: a function key goes with, and only with, an AWS/Lambda metric")

    @property
    def namespace(self) -> str:
        return {
            MetricSource.SERVICE: METRICS_NAMESPACE,
            MetricSource.FUNCTION: "AWS/Lambda",
            MetricSource.PIPELINE: "AWS/States",
            MetricSource.API: "AWS/ApiGateway",
        }[self.source]

    @property
    def label(self) -> str:
        return f"{self.name} {self.function}" if self.function else self.name

    def dimensions(self, watched: WatchedResources) -> dict[str, str]:
        match self.source:
            case MetricSource.SERVICE:
                return {"service": SERVICE_NAME}  # POWERTOOLS_SERVICE_NAME
            case MetricSource.FUNCTION:
                assert self.function is not None
                return {"FunctionName": watched.function_names[self.function]}
            case MetricSource.PIPELINE:
                return {"StateMachineArn": watched.state_machine_arn}
            case MetricSource.API:
                return {"ApiName": watched.api_name, "Stage": watched.api_stage}

    def identity(self, watched: WatchedResources) -> dict[str, Any]:
        """The metric as alarms name it (CloudWatch's `Metric` structure)."""
        return {
            "Namespace": self.namespace,
            "MetricName": self.name,
            "Dimensions": [{"Name": name, "Value": value} for name, value in self.dimensions(watched).items()],
        }


@dataclass(frozen=True)
class AlarmSpec:
    """A CloudWatch alarm: in alarm when `statistic` of its metric per `period_s` compares with `threshold` as
    `comparison` says in `datapoints_to_alarm` of the last `evaluation_periods` periods. Several metrics are summed
    by metric math. Its action publishes to the alert topic, and an alarm acts only when its state changes: one
    notification when trouble starts, none while it lasts."""

    key: str
    description: str
    metrics: tuple[MetricSpec, ...]
    statistic: str = "Sum"  # or an extended statistic such as "p99"
    threshold: float = 1
    comparison: str = "GreaterThanOrEqualToThreshold"
    period_s: int = 300
    evaluation_periods: int = 1
    datapoints_to_alarm: int | None = None  # None: every evaluated period
    # A period without a datapoint (no request, no check, nothing failed) is the healthy case, not missing data.
    treat_missing_data: str = "notBreaching"

    def __post_init__(self) -> None:
        if not 1 <= len(self.metrics) <= MAX_ALARM_METRICS:
            raise ValueError(f"{self.key}: an alarm reads 1 to {MAX_ALARM_METRICS} metrics, not {len(self.metrics)}")

    def physical_name(self) -> str:
        return f"{PREFIX}-{self.key}"


def metric_alarm(spec: AlarmSpec, watched: WatchedResources, actions: list[str]) -> dict[str, Any]:
    """`spec` in the shape both CloudWatch's PutMetricAlarm (the local cloud) and CloudFormation
    (`AWS::CloudWatch::Alarm`) take: one definition for both backends."""
    alarm: dict[str, Any] = {
        "AlarmName": spec.physical_name(),
        "AlarmDescription": spec.description,
        "ComparisonOperator": spec.comparison,
        "Threshold": spec.threshold,
        "EvaluationPeriods": spec.evaluation_periods,
        "DatapointsToAlarm": spec.datapoints_to_alarm or spec.evaluation_periods,
        "TreatMissingData": spec.treat_missing_data,
        "AlarmActions": actions,
    }
    if len(spec.metrics) == 1:
        statistic = "Statistic" if spec.statistic in STATISTICS else "ExtendedStatistic"
        return alarm | spec.metrics[0].identity(watched) | {"Period": spec.period_s, statistic: spec.statistic}
    ids = [f"m{index}" for index in range(len(spec.metrics))]
    queries = [
        {
            "Id": query_id,
            "MetricStat": {"Metric": metric.identity(watched), "Period": spec.period_s, "Stat": spec.statistic},
            "ReturnData": False,
        }
        for query_id, metric in zip(ids, spec.metrics, strict=True)
    ]
    total = {"Id": "total", "Expression": f"SUM([{', '.join(ids)}])", "ReturnData": True}
    return alarm | {"Metrics": [*queries, total]}


@dataclass(frozen=True)
class GraphSpec:
    """A graph on the dashboard: each metric drawn with each statistic, one point per `period_s`."""

    title: str
    metrics: tuple[MetricSpec, ...]
    statistics: tuple[str, ...] = ("Sum",)
    period_s: int = 300


@dataclass(frozen=True)
class DashboardSpec:
    name: str
    graphs: tuple[GraphSpec, ...]
    columns: int = 2


DASHBOARD_GRID_WIDTH = 24  # CloudWatch's dashboard grid


def dashboard_body(spec: DashboardSpec, watched: WatchedResources) -> str:
    """The dashboard's JSON body, which CloudWatch's PutDashboard (the local cloud) and CloudFormation
    (`AWS::CloudWatch::Dashboard`) take as it is: one definition for both backends."""
    width, height = DASHBOARD_GRID_WIDTH // spec.columns, 6

    def series(graph: GraphSpec, metric: MetricSpec, statistic: str) -> list[Any]:
        label = f"{metric.label} {statistic}" if len(graph.statistics) > 1 else metric.label
        dimensions = [part for dimension in metric.dimensions(watched).items() for part in dimension]
        return [metric.namespace, metric.name, *dimensions, {"stat": statistic, "label": label}]

    widgets = [
        {
            "type": "metric",
            "x": index % spec.columns * width,
            "y": index // spec.columns * height,
            "width": width,
            "height": height,
            "properties": {
                "title": graph.title,
                "region": watched.region,
                "view": "timeSeries",
                "stacked": False,
                "period": graph.period_s,
                "metrics": [
                    series(graph, metric, statistic) for metric in graph.metrics for statistic in graph.statistics
                ],
            },
        }
        for index, graph in enumerate(spec.graphs)
    ]
    return json.dumps({"widgets": widgets})


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
        """(prefix, days) of each retention class, and of the records Firehose could not partition (raw captured
        requests too): everything under the prefix expires after that many days."""
        classes = [(f"{self.prefix}{days}d/", days) for days in self.retention_classes]
        return [*classes, (self.error_prefix, ERROR_RETENTION_DAYS)]

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


def artifact_expiry(spec: CaptureDeliverySpec) -> list[tuple[str, int]]:
    """(prefix, days) of what expires in the artifact bucket: captured traffic by retention class, labels still
    waiting for their captures once no lookback (90 days at most) can match them, and batch work files (plans and
    chunk parts), which nothing reads once their batch has its output and report."""
    return [*spec.retention_prefixes(), (PENDING_LABELS, 91), (BATCH_WORK_PREFIX, BATCH_WORK_RETENTION_DAYS)]


def artifact_lifecycle_rules(spec: CaptureDeliverySpec) -> list[dict[str, Any]]:
    """The artifact bucket's lifecycle rules, in the S3 API's shape (CDK builds the same from the same values)."""
    abort = {
        "ID": "abort-incomplete-uploads",
        "Filter": {"Prefix": ""},
        "Status": "Enabled",
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": ABORT_INCOMPLETE_UPLOADS_DAYS},
    }
    return [abort] + [
        {
            "ID": f"expire-{prefix.rstrip('/').replace('/', '-')}",
            "Filter": {"Prefix": prefix},
            "Status": "Enabled",
            "Expiration": {"Days": days},
            # The bucket is versioned: an expired capture becomes a noncurrent version, gone a day later.
            "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
        }
        for prefix, days in artifact_expiry(spec)
    ]


@dataclass(frozen=True)
class Route:
    method: str
    path: str


@dataclass(frozen=True)
class KeyLimits:
    """A usage plan's limits for one API key: steady requests per second, burst, and a quota per period."""

    rate_per_s: float
    burst: int
    quota: int
    quota_period: str = "DAY"  # DAY, WEEK or MONTH, as API Gateway usage plans count them


@dataclass(frozen=True)
class ApiSpec:
    name: str
    function: str
    routes: tuple[Route, ...]
    stage: str = "v1"
    throttle_rate_per_s: int = 100
    throttle_burst: int = 200
    # Besides IAM, every method requires an API key: each client's key carries its own usage plan (rate, burst, quota).
    api_key_required: bool = True
    api_key_header: str = "x-api-key"
    default_key_limits: KeyLimits = KeyLimits(rate_per_s=50, burst=100, quota=1_000_000)


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
    def audit_bucket(self) -> str:
        return f"{PREFIX}-audit-{self.account}-{self.region}"

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

    @property
    def batch_state_machine(self) -> str:
        return BATCH.physical_name()

    def batch_state_machine_arn(self) -> str:
        return f"arn:aws:states:{self.region}:{self.account}:stateMachine:{self.batch_state_machine}"

    def alert_topic_arn(self) -> str:
        return f"arn:aws:sns:{self.region}:{self.account}:{self.alert_topic}"

    def function_arn(self, key: str) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account}:function:{FUNCTIONS[key].physical_name()}"


class ObjectLockMode(StrEnum):
    GOVERNANCE = "GOVERNANCE"  # no one may delete or overwrite a locked version, but for s3:BypassGovernanceRetention
    COMPLIANCE = "COMPLIANCE"  # no one at all, the account's root user included, until the retention ends


@dataclass(frozen=True)
class AuditLockSpec:
    """S3 Object Lock default retention of the audit bucket: every checkpoint version is locked this long."""

    mode: ObjectLockMode
    retention_days: int


# The audit chain's checkpoints (loopml_core.audit_anchor). GOVERNANCE, deliberately: LoopML deploys into its user's
# own account, and COMPLIANCE cannot be undone by anyone — not the root user, not AWS support — so a test stack's
# bucket could not be removed for the whole retention. Under GOVERNANCE no LoopML role and no principal without
# s3:BypassGovernanceRetention can delete or overwrite a checkpoint version either, and a bypass is an explicit,
# separately granted request that CloudTrail data events record. Seven years is the record-keeping period of the
# common financial rules (SOX, SEC 17a-4); at a few hundred bytes per commit it costs cents. A team under such a rule
# sets COMPLIANCE here (docs/governance.md, "Audit trail and its trust model").
AUDIT_LOCK = AuditLockSpec(mode=ObjectLockMode.GOVERNANCE, retention_days=7 * 365)
# Denied to every principal by the audit bucket's policy: a DeleteObject without a version id would put a delete
# marker over a checkpoint (allowed under Object Lock) and hide it from listings; a lifecycle rule could do the same.
AUDIT_DENIED_OBJECT_ACTIONS = ("s3:DeleteObject", "s3:DeleteObjectVersion")
AUDIT_DENIED_BUCKET_ACTIONS = ("s3:PutLifecycleConfiguration",)


def audit_checkpoint_objects(bucket_arn: str) -> str:
    """The objects a role granted `audit_checkpoints` may put: the checkpoint prefix of the audit bucket, no more."""
    return f"{bucket_arn}/{AUDIT_CHECKPOINT_PREFIX}*"


def audit_bucket_policy_statements(bucket_arn: str) -> list[dict[str, Any]]:
    """The audit bucket's own policy statements (beside TLS-only), in IAM's JSON shape: both backends apply them."""
    return [
        {
            "Sid": "NoCheckpointIsEverDeleted",
            "Effect": "Deny",
            "Principal": {"AWS": "*"},
            "Action": list(AUDIT_DENIED_OBJECT_ACTIONS),
            "Resource": f"{bucket_arn}/*",
        },
        {
            "Sid": "NoLifecycleRuleHidesCheckpoints",
            "Effect": "Deny",
            "Principal": {"AWS": "*"},
            "Action": list(AUDIT_DENIED_BUCKET_ACTIONS),
            "Resource": bucket_arn,
        },
    ]


# S3 layout of the data bucket. Uploads land in `incoming/`; nothing is ever deleted.
INCOMING_PREFIX = "incoming/"
DATASETS_PREFIX = "datasets/"
QUARANTINE_PREFIX = "quarantine/"
CONTRACTS_PREFIX = "contracts/"
CAPTURE_ERRORS_PREFIX = "capture-errors/"
MODELS_PREFIX = "models/"
REPORTS_PREFIX = "reports/"

CAPTURE_DELIVERY_BUFFER_S = 300  # Firehose's buffering interval for captured traffic
ERROR_RETENTION_DAYS = 30  # captured requests Firehose could not partition: kept to look into, then expired
ABORT_INCOMPLETE_UPLOADS_DAYS = 7  # parts of a multipart upload never completed

# Uploads larger than this are quarantined unread (the validation function's LOOPML_MAX_UPLOAD_BYTES).
MAX_UPLOAD_BYTES = 5 * 1024**3

# A batch file is cut into chunks of this many rows or bytes, whichever comes first (a Parquet row group is never
# split); each chunk is one child execution of the Distributed Map, scored by one batch_score invocation.
BATCH_CHUNK_ROWS = 100_000
BATCH_CHUNK_BYTES = 64 << 20
BATCH_WORK_RETENTION_DAYS = 7  # batch-work/ in the artifact bucket: a week to look into a batch, then expired

LAYERS: dict[Layer, LayerSpec] = {
    spec.key: spec
    for spec in (
        LayerSpec(
            Layer.CORE,
            "loopml_core with Powertools and pydantic",
            (
                "aws-lambda-powertools[tracer,parser]==3.37.0",
                "pydantic==2.14.3",
                "pyyaml==6.0.3",
                "orjson==3.13.0",
                "msgspec==0.22.0",
            ),
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
        LayerSpec(
            Layer.SCORING,
            "pyarrow, numpy and onnxruntime for batch scoring",
            ("pyarrow==26.0.1", "onnxruntime==1.32.0", "numpy==2.4.6"),
        ),
    )
}

FUNCTIONS: dict[str, FunctionSpec] = {
    spec.key: spec
    for spec in (
        FunctionSpec(
            "validate_upload",
            "Validates an upload against its dataset contract, then versions it or quarantines it",
            (Layer.CORE, Layer.DATA),
            Grants(
                data_bucket=Access.READ_WRITE,
                registry_table=Access.READ_WRITE,
                # register_dataset_version and record_upload (quarantined, duplicate; `_undeclared` too): the
                # dataset's items and the audit chain. Never a model, never the champion.
                registry_writes=(RegistryItems.DATASET, RegistryItems.AUDIT),
                start_pipeline=True,
                audit_checkpoints=True,
            ),
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
            # Writes the version's model card (Markdown and HTML) beside its artefact.
            Grants(
                registry_table=Access.READ_WRITE,
                # register_model_version: the model's meta, version, run and champion alias; the models index
                # the first version adds the model to; the audit chain; the events of the registration (outbox).
                registry_writes=(
                    RegistryItems.MODEL,
                    RegistryItems.MODELS_INDEX,
                    RegistryItems.OUTBOX,
                    RegistryItems.AUDIT,
                ),
                registry_deletes=(RegistryItems.OUTBOX,),
                artifact_bucket=Access.WRITE,
                audit_checkpoints=True,
                publish_events=True,
            ),
        ),
        FunctionSpec(
            "record_failure",
            "Records a failed pipeline run in the registry and the audit trail; the champion is untouched",
            (Layer.CORE,),
            # record_run_failure: the run's item under its model, and the audit chain.
            Grants(
                registry_table=Access.READ_WRITE,
                registry_writes=(RegistryItems.MODEL, RegistryItems.AUDIT),
                audit_checkpoints=True,
            ),
        ),
        FunctionSpec(
            "request_approval",
            "Holds a winning candidate for a person's approval: records the task token its run waits on and alerts; "
            "rejects it when nobody decided in time",
            (Layer.CORE,),
            # request_approval (the token item), reject on timeout (the version; the token item goes), the events
            # of both (outbox), the audit chain.
            Grants(
                registry_table=Access.READ_WRITE,
                registry_writes=(RegistryItems.MODEL, RegistryItems.OUTBOX, RegistryItems.AUDIT),
                registry_deletes=(RegistryItems.MODEL, RegistryItems.OUTBOX),
                publish_alerts=True,
                audit_checkpoints=True,
                publish_events=True,
            ),
        ),
        FunctionSpec(
            "upload_failed",
            "Gives an upload whose validation, label join or batch start failed after its retries the error outcome",
            (Layer.CORE,),
            # Tagging reads the object's current tags first (a tag write replaces them all); nothing else of the data.
            # record_upload (the error outcome): the dataset's upload item, and the audit chain.
            Grants(
                data_bucket=Access.TAG,
                registry_table=Access.READ_WRITE,
                registry_writes=(RegistryItems.DATASET, RegistryItems.AUDIT),
                publish_alerts=True,
                audit_checkpoints=True,
            ),
        ),
        FunctionSpec(
            "ingest_labels",
            "Joins an uploaded label file with the captured predictions it names: live performance per model version",
            (Layer.CORE, Layer.DATA),
            # Reads the label file, tags it and quarantines a bad one; reads captured traffic to join it, and leaves
            # the labels whose captures have not arrived yet for the checks (labels-pending/).
            Grants(
                data_bucket=Access.READ_WRITE,
                artifact_bucket=Access.READ_WRITE,
                registry_table=Access.READ_WRITE,
                # record_labels (the file's outcome under its model's dataset, the counts per version and day) and
                # record_upload (a quarantined file), with the audit chain.
                registry_writes=(RegistryItems.DATASET, RegistryItems.PERFORMANCE, RegistryItems.AUDIT),
                audit_checkpoints=True,
            ),
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
            # A warm container reads the champion alias at most this often: no registry read per request, and a
            # promotion or rollback reaches every container within this many seconds.
            environment=(("LOOPML_ALIAS_TTL_SECONDS", "5"),),
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
                # record_check: the model's monitoring state, counts of labels matched late, the alert's outbox
                # item, the audit chain; alert_sent deletes a published alert from the outbox, nothing else.
                registry_writes=(
                    RegistryItems.MODEL,
                    RegistryItems.PERFORMANCE,
                    RegistryItems.OUTBOX,
                    RegistryItems.AUDIT,
                ),
                registry_deletes=(RegistryItems.OUTBOX,),
                start_pipeline=True,
                publish_alerts=True,
                audit_checkpoints=True,
                publish_events=True,  # delivers registry events whose publishing failed when their change committed
            ),
            memory_mb=1024,
            timeout_s=300,
            # An hour of captures is complete once Firehose's buffer for it must have been written, and then some.
            environment=(("LOOPML_CAPTURE_SETTLE_SECONDS", str(CAPTURE_DELIVERY_BUFFER_S + 600)),),
        ),
        FunctionSpec(
            "batch_start",
            "Starts one batch scoring execution per file uploaded under batch/<model>/input/",
            (Layer.CORE,),
            # Reads nothing: the execution's name comes from the object's key and version, which the event carries.
            Grants(start_batch=True),
            memory_mb=256,
            timeout_s=30,
        ),
        FunctionSpec(
            "batch_plan",
            "Pins the champion's version and cuts a batch file into chunks, reading only what it needs",
            (Layer.CORE, Layer.DATA),
            # Streams the file (CSV) or reads its footer (Parquet) and its tags; writes the plan and the chunk list.
            Grants(data_bucket=Access.READ, artifact_bucket=Access.WRITE, registry_table=Access.READ),
            memory_mb=1024,
            timeout_s=900,  # one streamed pass over a 5 GB CSV
            environment=(
                ("LOOPML_BATCH_CHUNK_ROWS", str(BATCH_CHUNK_ROWS)),
                ("LOOPML_BATCH_CHUNK_BYTES", str(BATCH_CHUNK_BYTES)),
            ),
        ),
        FunctionSpec(
            "batch_score",
            "Scores one chunk of a batch file with the pinned model version, in bounded memory",
            (Layer.CORE, Layer.SCORING),
            # Reads its byte range or row groups of the input, the plan and the model; writes its part and findings.
            Grants(data_bucket=Access.READ, artifact_bucket=Access.READ_WRITE),
            # Memory stays flat (a few MB per segment or record batch); 2048 MB buys a second vCPU share.
            memory_mb=2048,
            timeout_s=900,
        ),
        FunctionSpec(
            "batch_finish",
            "Joins the scored chunks into the output, writes the report and tags the input with the outcome",
            (Layer.CORE, Layer.DATA),
            # Copies the CSV parts server-side (or rewrites Parquet a row group at a time) into the output.
            Grants(data_bucket=Access.READ_WRITE, artifact_bucket=Access.READ),
            memory_mb=1024,
            timeout_s=900,
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
        "RequestApprovalFunctionArn": "request_approval",
    },
)

# Batch scoring: its Distributed Map state (`ScoreChunks`) reads the chunk list from the artifact bucket and runs one
# child execution of this same state machine per chunk.
BATCH = StateMachineSpec(
    key="batch-scoring",
    definition_file=BATCH_ASL,
    function_substitutions={
        "PlanFunctionArn": "batch_plan",
        "ScoreFunctionArn": "batch_score",
        "FinishFunctionArn": "batch_finish",
    },
)
BATCH_MAP_LABEL = "ScoreChunks"  # the Distributed Map's Label: child executions are named `<machine>/<label>:<id>`

API = ApiSpec(
    name=f"{PREFIX}-inference",
    function="predict",
    routes=(
        Route("GET", "/health"),
        Route("GET", "/v1/openapi.json"),
        Route("GET", "/v1/models/{name}"),
        Route("POST", "/v1/models/{name}/predict"),
        # Every other method of a known path reaches the function too, which answers 405 with `Allow`; API Gateway
        # alone would say 403 "Missing Authentication Token", which tells a client nothing.
        Route("ANY", "/health"),
        Route("ANY", "/v1/openapi.json"),
        Route("ANY", "/v1/models/{name}"),
        Route("ANY", "/v1/models/{name}/predict"),
    ),
)


class Duty(StrEnum):
    """What people (or their CI jobs) do with a deployed LoopML, each emitted as one managed policy."""

    DATA_PRODUCER = "data-producer"
    APPROVER = "approver"
    OPERATOR = "operator"
    CONSUMER = "consumer"


@dataclass(frozen=True)
class DutySpec:
    """A duty as one customer-managed IAM policy that an account's administrator attaches to users, groups, roles or
    IAM Identity Center permission sets. The stack emits the policy, never a principal: who holds a duty is the
    account's business. Key patterns are IAM `StringLike` patterns relative to the bucket."""

    key: Duty
    description: str
    output: str  # the stack output holding the policy's ARN
    uploads: tuple[str, ...] = ()  # data-bucket keys it may put (with tags, in parts) and read the outcome tag of
    data_reads: tuple[str, ...] = ()  # data-bucket keys it may read
    artifact_reads: tuple[str, ...] = ()  # artifact-bucket keys it may read
    read_everything: bool = False  # every object of the data, artifact and audit buckets, and the pipeline's runs
    registry_read: bool = False  # GetItem and Query, table-wide
    # Put, delete and condition-check items under these partitions (what alias, approval, deployment and rollback
    # commands do in one transaction with their audit records); with an audit checkpoint after each commit.
    registry_writes: tuple[RegistryItems, ...] = ()
    start_pipeline: bool = False
    answer_approvals: bool = False  # SendTaskSuccess / SendTaskFailure on the training pipeline's waiting task
    publish_events: bool = False  # put the registry events of its changes on the default EventBridge bus
    invoke_api: bool = False  # execute-api:Invoke on every route of the inference API's stage

    def __post_init__(self) -> None:
        if self.registry_writes and (RegistryItems.AUDIT not in self.registry_writes or not self.registry_read):
            raise ValueError(f"{self.key}: a registry commit reads the audit head and appends to the chain")

    def policy_name(self) -> str:
        return f"{PREFIX}-{self.key}"


DUTY_REGISTRY_WRITES = (RegistryItems.MODEL, RegistryItems.MODELS_INDEX, RegistryItems.OUTBOX, RegistryItems.AUDIT)

DUTIES: dict[Duty, DutySpec] = {
    spec.key: spec
    for spec in (
        DutySpec(
            Duty.DATA_PRODUCER,
            "LoopML data producer: uploads datasets, labels and batch files and reads their outcomes; nothing else",
            output="DataProducerPolicyArn",
            uploads=(f"{INCOMING_PREFIX}*", f"{LABELS_PREFIX}*", f"{BATCH_PREFIX}*/{BATCH_INPUT}*"),
            # Quarantined uploads and label files with their reports; batch outputs with theirs.
            data_reads=(f"{QUARANTINE_PREFIX}*", f"{BATCH_PREFIX}*/{BATCH_OUTPUT}*"),
        ),
        DutySpec(
            Duty.APPROVER,
            "LoopML approver: approves or rejects model versions and sets aliases; reads the registry and model cards",
            output="ApproverPolicyArn",
            artifact_reads=(f"{MODELS_PREFIX}*",),  # model cards live beside their artefacts
            registry_read=True,
            # Versions, aliases and approvals (MODEL#), a model's description and tags (the models index), the
            # events of those changes (outbox), the audit chain.
            registry_writes=DUTY_REGISTRY_WRITES,
            # `loopml models approve|reject` resumes the pipeline execution waiting on the version's task token.
            answer_approvals=True,
            publish_events=True,
        ),
        DutySpec(
            Duty.OPERATOR,
            "LoopML operator: deploys (canary, shadow, A/B), promotes and rolls back; starts runs; reads everything",
            output="OperatorPolicyArn",
            read_everything=True,
            registry_read=True,
            registry_writes=DUTY_REGISTRY_WRITES,
            start_pipeline=True,
            publish_events=True,
        ),
        DutySpec(
            Duty.CONSUMER,
            "LoopML consumer: calls the inference API (with an API key); nothing else",
            output="ConsumerPolicyArn",
            invoke_api=True,
        ),
    )
}


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
# Outputs and reports land under batch/ too: the start function starts executions for batch/<model>/input/ only.
BATCH_TRIGGER = S3TriggerSpec("batch_start", BATCH_PREFIX)
S3_TRIGGERS = (UPLOAD_TRIGGER, LABELS_TRIGGER, BATCH_TRIGGER)

# Every upload ends with an outcome: when its function crashes or times out on every attempt, the upload gets
# `error`. Lambda's default is 2 retries; declared so both backends retry the same number of times.
VALIDATION_FAILURES = AsyncInvokeSpec(function="validate_upload", retry_attempts=2, on_failure="upload_failed")
LABEL_FAILURES = AsyncInvokeSpec(function="ingest_labels", retry_attempts=2, on_failure="upload_failed")
# A batch file whose execution could not be started (StartExecution denied or throttled, the function timing out) is
# not dropped either: upload_failed tags it `loopml-batch-status=error` and alerts.
BATCH_START_FAILURES = AsyncInvokeSpec(function="batch_start", retry_attempts=2, on_failure="upload_failed")
ASYNC_INVOCATIONS: dict[str, AsyncInvokeSpec] = {
    spec.function: spec for spec in (VALIDATION_FAILURES, LABEL_FAILURES, BATCH_START_FAILURES)
}

# Invocations of the on-failure function count uploads whose handling failed, whether or not that function then
# manages to record them: the alarm still fires if it crashes too (say the registry is unreachable), which an
# application metric emitted by the function would not.
UPLOAD_ERRORS_ALARM = AlarmSpec(
    key="upload-errors",
    description="An upload's validation, a label file's join or the start of a batch file's scoring failed after "
    "Lambda's retries: the upload has the error outcome (nothing registered, nothing scored); the alert names the file "
    "and the error",
    metrics=(MetricSpec(MetricSource.FUNCTION, "Invocations", VALIDATION_FAILURES.on_failure),),
)


BATCH_FUNCTIONS = ("batch_start", "batch_plan", "batch_score", "batch_finish")


def _per_function(metric: str, keys: tuple[str, ...] | None = None) -> tuple[MetricSpec, ...]:
    return tuple(MetricSpec(MetricSource.FUNCTION, metric, key) for key in (keys or tuple(FUNCTIONS)))


# The drift check emits one datapoint per model and check, once an hour. Its alarm looks at the last two hours, so a
# check landing a little early or late in its clock hour does not read as an hour without drift: the alarm notifies
# when an episode starts and returns to OK once two hours of checks are clean.
DRIFT_CHECK_PERIOD_S = DRIFT_SCHEDULE.rate_minutes * 60
DRIFT_ALARM = AlarmSpec(
    key="drift-detected",
    description="The drift check found drift in a model's inputs or predictions; its alert names the model and "
    "links the report. One notification per episode: the alarm stays in ALARM while drift continues",
    metrics=(MetricSpec(MetricSource.SERVICE, "DriftDetected"),),
    period_s=DRIFT_CHECK_PERIOD_S,
    evaluation_periods=2,
    datapoints_to_alarm=1,
)
PERFORMANCE_ALARM = AlarmSpec(
    key="performance-dropped",
    description="A model's live performance on labelled traffic fell beyond its contract's tolerance; the drift "
    "check's alert names the model and metric. One notification per episode: the alarm stays in ALARM meanwhile",
    metrics=(MetricSpec(MetricSource.SERVICE, "PerformanceDropped"),),
    period_s=DRIFT_CHECK_PERIOD_S,
    evaluation_periods=2,
    datapoints_to_alarm=1,
)
# Aborted runs are left out: only an operator stops an execution.
PIPELINE_ALARM = AlarmSpec(
    key="pipeline-failed",
    description="A training pipeline run failed or timed out; its failure is recorded in the registry and the "
    "champion is unchanged",
    metrics=(
        MetricSpec(MetricSource.PIPELINE, "ExecutionsFailed"),
        MetricSpec(MetricSource.PIPELINE, "ExecutionsTimedOut"),
    ),
)
UPLOADS_QUARANTINED_ALARM = AlarmSpec(
    key="uploads-quarantined",
    description="An upload broke its dataset contract and was quarantined; its report under quarantine/ names "
    "every problem",
    metrics=(MetricSpec(MetricSource.SERVICE, "UploadsQuarantined"),),
)
LABELS_QUARANTINED_ALARM = AlarmSpec(
    key="labels-quarantined",
    description="A label file was malformed and was quarantined; its report under quarantine/ names the rows and "
    "columns",
    metrics=(MetricSpec(MetricSource.SERVICE, "LabelsQuarantined"),),
)
# Any 5xx is a crash, a timeout or an outage, never a caller's mistake (those are 4xx).
PREDICT_ERRORS_ALARM = AlarmSpec(
    key="predict-5xx",
    description="The inference API answered with a server error (the predict function crashed or timed out)",
    metrics=(MetricSpec(MetricSource.API, "5XXError"),),
)
# A warm prediction takes tens of milliseconds; a cold start (onnxruntime and the model loaded) takes seconds. At low
# traffic one cold start is a minute's p99, so the alarm needs a slow p99 in 3 of 5 minutes: sustained slowness.
PREDICT_LATENCY_ALARM = AlarmSpec(
    key="predict-latency",
    description="The inference API's p99 latency stayed above 1 second for 3 of the last 5 minutes",
    metrics=(MetricSpec(MetricSource.API, "Latency"),),
    statistic="p99",
    threshold=1000,
    comparison="GreaterThanThreshold",
    period_s=60,
    evaluation_periods=5,
    datapoints_to_alarm=3,
)
# No function reserves concurrency, so any throttle means the account's concurrency ran out: predictions are refused
# and uploads wait for Lambda's retries.
THROTTLES_ALARM = AlarmSpec(
    key="throttles",
    description="Lambda throttled a LoopML function: the account's concurrency is exhausted",
    metrics=_per_function("Throttles", tuple(key for key in FUNCTIONS if key not in BATCH_FUNCTIONS)),
)
# An alarm reads at most ten metrics: the batch functions' throttles have their own. A Distributed Map of many chunks
# is what exhausts an account's concurrency first; its steps retry throttled invocations, so a batch slows down
# rather than fails, but predictions and uploads compete for the same concurrency meanwhile.
BATCH_THROTTLES_ALARM = AlarmSpec(
    key="batch-throttles",
    description="Lambda throttled a batch scoring function: the account's concurrency is exhausted (lower the "
    "Distributed Map's MaxConcurrency or raise the account's limit)",
    metrics=_per_function("Throttles", BATCH_FUNCTIONS),
)
# A prediction that is served but not captured is invisible to the drift check and to label joins.
CAPTURE_ERRORS_ALARM = AlarmSpec(
    key="capture-errors",
    description="Predictions were served but not captured: drift checks and label joins will not see them",
    metrics=(MetricSpec(MetricSource.SERVICE, "CaptureErrors"),),
)
# The check is started by the schedule, which has no on-failure destination: a check that keeps failing would
# leave monitoring stopped without a word.
CHECK_FAILED_ALARM = AlarmSpec(
    key="monitoring-check-failed",
    description="The monitoring check failed: drift and live performance are not being watched until it is fixed",
    metrics=(MetricSpec(MetricSource.FUNCTION, "Errors", DRIFT_SCHEDULE.function),),
    period_s=DRIFT_CHECK_PERIOD_S,
)
# A batch whose step crashed after its retries (out of memory, a timeout, a bug): nothing was output. A refused file
# (no champion, missing columns) is the uploader's to fix and alarms no one; its report says why.
BATCH_FAILED_ALARM = AlarmSpec(
    key="batch-failed",
    description="A batch scoring run failed after its retries: nothing was output; the report beside the output "
    "names the step and the error",
    metrics=(MetricSpec(MetricSource.SERVICE, "BatchesFailed"),),
)
ALARMS = (
    UPLOAD_ERRORS_ALARM,
    CHECK_FAILED_ALARM,
    DRIFT_ALARM,
    PERFORMANCE_ALARM,
    PIPELINE_ALARM,
    UPLOADS_QUARANTINED_ALARM,
    LABELS_QUARANTINED_ALARM,
    PREDICT_ERRORS_ALARM,
    PREDICT_LATENCY_ALARM,
    THROTTLES_ALARM,
    BATCH_THROTTLES_ALARM,
    CAPTURE_ERRORS_ALARM,
    BATCH_FAILED_ALARM,
)


DASHBOARD = DashboardSpec(
    name=PREFIX,
    graphs=(
        GraphSpec(
            "Predict requests and predicted records",
            (MetricSpec(MetricSource.API, "Count"), MetricSpec(MetricSource.SERVICE, "Predictions")),
        ),
        GraphSpec("Predict latency (ms)", (MetricSpec(MetricSource.API, "Latency"),), ("p50", "p99"), period_s=60),
        GraphSpec(
            "Predict errors and uncaptured predictions",
            (
                MetricSpec(MetricSource.API, "5XXError"),
                MetricSpec(MetricSource.API, "4XXError"),
                MetricSpec(MetricSource.SERVICE, "CaptureErrors"),
            ),
        ),
        GraphSpec(
            "Drift and live performance (per hourly check)",
            (MetricSpec(MetricSource.SERVICE, "DriftDetected"), MetricSpec(MetricSource.SERVICE, "PerformanceDropped")),
            period_s=DRIFT_CHECK_PERIOD_S,
        ),
        GraphSpec(
            "Upload outcomes",
            tuple(MetricSpec(MetricSource.SERVICE, f"Uploads{status.capitalize()}") for status in UploadStatus),
        ),
        GraphSpec(
            "Label file outcomes",
            (MetricSpec(MetricSource.SERVICE, "LabelsAccepted"), MetricSpec(MetricSource.SERVICE, "LabelsQuarantined")),
        ),
        GraphSpec(
            "Pipeline executions",
            tuple(
                MetricSpec(MetricSource.PIPELINE, f"Executions{outcome}")
                for outcome in ("Started", "Succeeded", "Failed", "TimedOut")
            ),
        ),
        GraphSpec(
            "Batch outcomes",
            tuple(
                MetricSpec(MetricSource.SERVICE, f"Batches{outcome}")
                for outcome in ("Scored", "Refused", "Failed", "Error")  # Error: not started (upload_failed)
            ),
        ),
        GraphSpec("Batch rows scored", (MetricSpec(MetricSource.SERVICE, "BatchRowsScored"),)),
        GraphSpec("Function errors", _per_function("Errors")),
        GraphSpec("Function throttles", _per_function("Throttles")),
    ),
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
    if spec.grants.start_batch:
        env["BATCH_STATE_MACHINE_ARN"] = names.batch_state_machine_arn()
    if spec.grants.publish_alerts:
        env["ALERT_TOPIC_ARN"] = names.alert_topic_arn()
    if spec.grants.audit_checkpoints:
        env[AUDIT_BUCKET_ENV] = names.audit_bucket
    if spec.grants.publish_events:
        env[EVENT_BUS_ENV] = EVENT_BUS
    return env
