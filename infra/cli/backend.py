"""Where the CLI points: the local cloud started by `loopml local up`, or a deployed stack in an AWS account."""

from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from infra import declaration as decl
from infra.cli.errors import BackendError
from infra.keys import LOCAL_KEY_NAME, USAGE_FILE, ApiGatewayKeys, ApiKey, Usage, usage_from_record
from loopml_core.adapters.events import EventBridgePublisher
from loopml_core.adapters.object_store import S3ObjectStore, StoredObject
from loopml_core.adapters.pipeline import StepFunctionsRunner
from loopml_core.adapters.table import DynamoTable
from loopml_core.audit_anchor import S3AuditAnchor
from loopml_core.models import UploadOutcome
from loopml_core.registry import UNDECLARED, Registry
from loopml_core.uploads import dataset_of, source_id

STACK_NAME = "LoopML"
UPLOAD_MARKER = "loopml-upload"  # object metadata that tells the CLI which version its upload made


def state_dir() -> Path:
    """Where the local cloud keeps its state (`LOOPML_HOME`, default `.loopml/` in the checkout)."""
    return Path(os.environ.get("LOOPML_HOME", decl.ROOT / ".loopml"))


def read_local_info() -> dict[str, Any] | None:
    try:
        info: dict[str, Any] = json.loads((state_dir() / "local.json").read_text())
    except (OSError, ValueError):
        return None
    return info


@dataclass
class Backend:
    region: str
    endpoint_url: str | None
    api_url: str | None
    ca_cert: str | None
    names: decl.Names
    # The deployed API uses IAM authorization: requests are SigV4-signed with the caller's AWS credentials.
    sign_requests: bool = False
    # The API key sent in the x-api-key header (--api-key, LOOPML_API_KEY). Without one, a local cloud's default
    # key is used; the deployed API has no default: each client uses its own (`loopml keys create`).
    api_key: str | None = None
    # The running `loopml local up`'s state directory, where its gateway writes what each key used.
    local_state: Path | None = None
    # Who the caller is on AWS (STS GetCallerIdentity's ARN): the actor of the audit records this CLI writes there.
    principal: str | None = None

    @classmethod
    def resolve(
        cls, endpoint_url: str | None = None, api_url: str | None = None, api_key: str | None = None
    ) -> Backend:
        """Explicit flags first, then a running `loopml local up`, then the AWS account in the environment."""
        endpoint_url = endpoint_url or os.environ.get("LOOPML_ENDPOINT_URL")
        api_url = api_url or os.environ.get("LOOPML_API_URL")
        api_key = api_key or os.environ.get("LOOPML_API_KEY") or None
        local = read_local_info()
        if endpoint_url is None and local is not None:
            _use_local_credentials()
            return cls(
                local["region"],
                local["aws_endpoint"],
                api_url or local["api_url"],
                local.get("ca_cert"),
                decl.Names(local["account"], local["region"]),
                api_key=api_key,
                local_state=state_dir(),
            )
        import boto3

        session = boto3.session.Session()
        region = session.region_name or "us-east-1"
        if endpoint_url:
            _use_local_credentials()
        try:
            identity = session.client("sts", region_name=region, endpoint_url=endpoint_url).get_caller_identity()
        except Exception as error:
            raise BackendError(
                f"no local cloud is running (start one with `loopml local up`) and no AWS credentials work: {error}"
            ) from error
        return cls(
            region,
            endpoint_url,
            api_url,
            None,
            decl.Names(identity["Account"], region),
            sign_requests=not endpoint_url,
            api_key=api_key,
            principal=identity.get("Arn"),
        )

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(service, region_name=self.region, endpoint_url=self.endpoint_url)

    @cached_property
    def registry(self) -> Registry:
        anchor = S3AuditAnchor(self.names.audit_bucket, lambda: self.store)
        actor = cli_actor(self.principal)
        events = EventBridgePublisher(make_client=lambda: self.client("events"))
        table = DynamoTable(self.names.registry_table, self.client("dynamodb"))
        return Registry(table, actor=actor, anchor=anchor, events=events)

    @cached_property
    def store(self) -> S3ObjectStore:
        return S3ObjectStore(self.client("s3"))

    @cached_property
    def pipeline(self) -> StepFunctionsRunner:
        return StepFunctionsRunner(self.names.state_machine_arn(), self.client("stepfunctions"))

    @cached_property
    def keys(self) -> ApiGatewayKeys:
        """The inference API's keys and their usage plans (`loopml keys`)."""
        return ApiGatewayKeys(self.client("apigateway"))

    def key_usage(self, key: ApiKey, now: datetime) -> Usage | None:
        """What a key used in its quota period: from API Gateway's usage on AWS; locally, from what the running
        gateway counted (moto keeps no usage). None when neither says."""
        if self.local_state is not None:
            try:
                counted = json.loads((self.local_state / USAGE_FILE).read_text())
            except (OSError, ValueError):
                counted = {}
            return usage_from_record(counted.get(key.id), key, now)
        return self.keys.usage(key, now)

    @cached_property
    def request_key(self) -> str | None:
        """The API key requests carry: the one given, else a local cloud's default key; on AWS one must be given."""
        if self.api_key:
            return self.api_key
        if not decl.API.api_key_required:
            return None
        if self.endpoint_url is not None:  # a local cloud: its default key, read back from its REST API
            return self.keys.get(LOCAL_KEY_NAME, include_value=True).value
        raise BackendError(
            "the inference API requires an API key: create one with `loopml keys create NAME` and pass its value "
            "with --api-key or LOOPML_API_KEY"
        )

    def upload_file(self, path: Path, key: str, on_progress: Callable[[int], None] | None = None) -> StoredObject:
        """Upload a file to the data bucket as `aws s3 cp` does (in parts above 8 MB), streaming it from disk.

        `on_progress(bytes)` is called as parts go up, with the bytes sent since the last call.
        """
        marker = uuid.uuid4().hex
        bucket = self.names.data_bucket
        client = self.store.client
        client.upload_file(
            str(path), bucket, key, ExtraArgs={"Metadata": {UPLOAD_MARKER: marker}}, Callback=on_progress
        )
        # The managed transfer does not return the version it made; the marker finds it even if others upload too.
        head = client.head_object(Bucket=bucket, Key=key)
        if head.get("Metadata", {}).get(UPLOAD_MARKER) != marker:
            versions = client.list_object_versions(Bucket=bucket, Prefix=key).get("Versions", [])
            for version in (v for v in versions if v["Key"] == key):
                head = client.head_object(Bucket=bucket, Key=key, VersionId=version["VersionId"])
                if head.get("Metadata", {}).get(UPLOAD_MARKER) == marker:
                    break
        return StoredObject(bucket, key, head.get("VersionId") or "null")

    def invoke(self, function_key: str, event: dict[str, Any]) -> dict[str, Any]:
        reply = self.client("lambda").invoke(
            FunctionName=decl.FUNCTIONS[function_key].physical_name(), Payload=json.dumps(event).encode()
        )
        payload: dict[str, Any] = json.loads(reply["Payload"].read() or b"null")
        if reply.get("FunctionError"):
            raise BackendError(f"{function_key} failed: {payload.get('errorMessage')}")
        return payload

    def api(self) -> str:
        if self.api_url:
            return self.api_url.rstrip("/")
        outputs = self.client("cloudformation").describe_stacks(StackName=STACK_NAME)["Stacks"][0].get("Outputs", [])
        for output in outputs:
            if output["OutputKey"].startswith("ApiUrl") or output["OutputKey"].endswith("ApiUrl"):
                return str(output["OutputValue"]).rstrip("/")
        raise BackendError(f"stack {STACK_NAME} has no ApiUrl output; pass --api-url")

    def http(
        self, method: str, path: str, body: Any = None, extra_headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], Any]:
        url = self.api() + path
        headers = {"Content-Type": "application/json", **(extra_headers or {})}
        if (key := self.request_key) is not None:
            headers[decl.API.api_key_header] = key
        if self.sign_requests:
            headers = _sigv4_headers(method, url, body, self.region, headers)
        return http_json(method, url, body, self.ca_cert, headers)


def _sigv4_headers(
    method: str, url: str, body: Any, region: str, headers: dict[str, str] | None = None
) -> dict[str, str]:
    """`headers` (JSON by default) with a SigV4 signature for execute-api over them and the body."""
    import boto3
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    credentials = boto3.session.Session().get_credentials()
    if credentials is None:
        raise BackendError("the deployed API needs AWS credentials to sign requests (IAM authorization)")
    data = json.dumps(body).encode() if body is not None else None
    request = AWSRequest(
        method=method, url=url, data=data, headers=dict(headers or {"Content-Type": "application/json"})
    )
    SigV4Auth(credentials.get_frozen_credentials(), "execute-api", region).add_auth(request)
    return dict(request.headers.items())


def http_json(
    method: str, url: str, body: Any = None, ca_cert: str | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    """One JSON request; returns (status, headers, parsed body) for 2xx and 4xx alike."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers=headers or {"Content-Type": "application/json"}
    )
    context = ssl.create_default_context(cafile=ca_cert) if url.startswith("https") and ca_cert else None
    try:
        with urllib.request.urlopen(request, context=context, timeout=60) as reply:
            raw = reply.read()
            return reply.status, dict(reply.headers.items()), json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        raw = error.read()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        return error.code, dict(error.headers.items()), parsed
    except urllib.error.URLError as error:
        raise BackendError(f"cannot reach {url}: {error.reason}") from error


def _use_local_credentials() -> None:
    # moto accepts any credentials; a laptop without an AWS profile must still reach the local cloud.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")


def cli_actor(principal: str | None) -> str:
    """Who the audit trail says made a change: the IAM principal on AWS (an assumed role's ARN names the session,
    e.g. the SSO user), the operating-system user on a local cloud."""
    if principal:
        return f"cli:{principal}"
    import getpass

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        user = "unknown"
    return f"cli:{user}"


def upload_and_wait(store: S3ObjectStore, bucket: str, key: str, body: bytes, timeout: float = 120) -> dict[str, str]:
    """Put an upload into `incoming/` and wait for the validation function to tag it with its outcome."""
    import time

    stored = store.put(bucket, key, body, "text/csv")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tags = store.tags(bucket, key, stored.version_id)
        if "loopml-status" in tags:
            return {**tags, "version_id": stored.version_id}
        time.sleep(0.1)
    raise BackendError(f"no validation outcome for s3://{bucket}/{key} after {timeout:.0f}s; is the trigger deployed?")


def wait_for_outcome(backend: Backend, stored: StoredObject, timeout: float = 120) -> UploadOutcome:
    """Wait for the outcome validation records for an uploaded object version under `incoming/`."""
    import time

    dataset = dataset_of(stored.key) or UNDECLARED
    upload = source_id(stored.key, stored.version_id)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        outcome = backend.registry.upload(dataset, upload)
        if outcome is not None:
            return outcome
        time.sleep(0.2)
    raise BackendError(
        f"no validation outcome for {stored.uri} (version {stored.version_id}) after {timeout:.0f}s; it may still be "
        f"running: see `loopml datasets show {dataset}`"
    )
