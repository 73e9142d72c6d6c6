"""The inference REST API, locally: HTTP(S) requests become API Gateway proxy events for the declared routes and go
to the declared function through the Lambda Invoke API, exactly as API Gateway's Lambda proxy integration does.

Before a request reaches the function, the gateway does what API Gateway does with API keys: a method that requires
a key refuses a request without a known, enabled key in the `x-api-key` header (403), and each key's usage plan
limits it (429): a token bucket for its rate and burst, a counter per quota period for its quota. Keys and their
limits are read from the REST API on moto through the same adapter `loopml keys` uses (`infra.keys`), so a key made
with the CLI works here at once, a revoked one stops within `KEY_CACHE_SECONDS`, and a client tested locally meets
the same answers on AWS.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import math
import os
import re
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from infra import declaration as decl
from infra.declaration import KeyLimits, Route
from infra.keys import (
    LOCAL_KEY_NAME,
    NO_LIMIT,
    USAGE_FILE,
    ApiGatewayKeys,
    ApiKey,
    ApiKeys,
    quota_window,
    usage_record,
)
from infra.local.cloud import ACCOUNT, LocalCloud

MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit
KEY_CACHE_SECONDS = 2.0  # keys and limits are re-read this often: a revoked key stops within this bound
MISS_RELOAD_SECONDS = 0.1  # an unknown key re-reads them at once (a new key works), but at most this often
USAGE_FLUSH_SECONDS = 1.0

Reply = tuple[int, dict[str, str], bytes]


def _message(status: int, message: str, **headers: str) -> Reply:
    """A reply API Gateway makes itself, without calling the function: `{"message": ...}`."""
    body = json.dumps({"message": message}, separators=(",", ":")).encode()
    return status, {"Content-Type": "application/json", **headers}, body


def _route_pattern(path: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path) + "$")


def _specificity(path: str) -> tuple[int, ...]:
    """Literal path segments beat {parameters}, from left to right, as API Gateway picks a resource."""
    return tuple(0 if part.startswith("{") else 1 for part in path.strip("/").split("/"))


RoutePatterns = Sequence[tuple[Route, re.Pattern[str]]]
ROUTES: RoutePatterns = [(route, _route_pattern(route.path)) for route in decl.API.routes]


def match_route(method: str, path: str, routes: RoutePatterns = ROUTES) -> tuple[Route, dict[str, str]] | None:
    """The route that serves `method path`, with its path parameters, or None: as API Gateway, the most specific
    resource matching the path is chosen first, then its method: the request's own method, else ANY."""
    matched = [(route, found) for route, pattern in routes if (found := pattern.match(path))]
    if not matched:
        return None
    best = max(_specificity(route.path) for route, _ in matched)
    on_resource = [(route, found) for route, found in matched if _specificity(route.path) == best]
    for wanted in (method, "ANY"):
        for route, found in on_resource:
            if route.method == wanted:
                return route, found.groupdict()
    return None


def proxy_event(
    route: Route,
    parameters: dict[str, str],
    method: str,
    raw_path: str,
    headers: dict[str, str],
    body: bytes,
    key: ApiKey | None = None,
) -> dict[str, Any]:
    """The REST API (v1) proxy event API Gateway sends the function for a request on `route`."""
    url = urlsplit(raw_path)
    query = dict(parse_qsl(url.query))
    try:
        text: str | None = body.decode("utf-8") if body else None
        encoded = False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode(), True
    identity: dict[str, Any] = {
        "sourceIp": headers.get("X-Forwarded-For", "127.0.0.1"),
        "userAgent": headers.get("User-Agent", ""),
    }
    if key is not None:  # what API Gateway fills in for a method that requires a key
        identity |= {"apiKey": key.value, "apiKeyId": key.id}
    return {
        "resource": route.path,
        "path": url.path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} or None,
        "pathParameters": parameters or None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": route.path,
            "httpMethod": method,
            "path": f"/{decl.API.stage}{url.path}",
            "stage": decl.API.stage,
            "accountId": ACCOUNT,
            "apiId": "local",
            "protocol": "HTTP/1.1",
            "requestId": str(uuid.uuid4()),
            "requestTimeEpoch": int(time.time() * 1000),
            "identity": identity,
        },
        "body": text,
        "isBase64Encoded": encoded,
    }


def _too_many(message: str, retry_after_s: float) -> Reply:
    return _message(429, message, **{"Retry-After": str(max(1, math.ceil(retry_after_s)))})


@dataclass
class _Meter:
    """One key's token bucket (rate, burst) and its count in the current quota period."""

    limits: KeyLimits
    tokens: float
    updated: float
    period_start: dt.datetime | None = None
    used: int = 0


class KeyEnforcer:
    """API Gateway's API key check and usage plan limits, for the local gateway; safe across the server's threads.

    `clock` gives seconds since the epoch (tests move it); quota periods are UTC days, weeks from Monday and
    calendar months. A request refused by a limit counts against nothing, as on API Gateway.
    """

    def __init__(
        self,
        keys: ApiKeys,
        clock: Callable[[], float] = time.time,
        usage_path: Path | None = None,
        cache_seconds: float = KEY_CACHE_SECONDS,
    ) -> None:
        self.keys = keys
        self.clock = clock
        self.usage_path = usage_path
        self.cache_seconds = cache_seconds
        self._reload_lock = threading.Lock()
        self._cache_lock = threading.Lock()
        self._by_value: dict[str, ApiKey] = {}
        self._by_name: dict[str, ApiKey] = {}
        self._loaded_at = -math.inf
        self._read_cost = 0.0  # seconds the last read of the keys took
        self._meter_lock = threading.Lock()
        self._meters: dict[str, _Meter] = {}
        self._flush: threading.Timer | None = None

    def _reload(self, now: float) -> None:
        """Read the keys and their limits again (called holding the reload lock: one read at a time)."""
        began = time.perf_counter()
        keys = self.keys.list(include_values=True)
        with self._cache_lock:
            self._by_value = {key.value: key for key in keys if key.value}
            self._by_name = {key.name: key for key in keys}
            self._loaded_at = now
            self._read_cost = time.perf_counter() - began
        with self._meter_lock:
            for gone in set(self._meters) - {key.id for key in keys}:
                del self._meters[gone]

    def _due(self, now: float, known: bool) -> bool:
        """Called holding the cache lock. An unknown key reads the keys again at once, but no more often than ten
        times the last read took: a flood of bad keys spends at most a tenth of the time reading."""
        age = now - self._loaded_at
        return age >= self.cache_seconds or (not known and age >= max(MISS_RELOAD_SECONDS, 10 * self._read_cost))

    def lookup(self, value: str) -> ApiKey | None:
        """The key with this value, read again when the cache is older than its bound or the value is unknown."""
        now = self.clock()
        with self._cache_lock:
            key = self._by_value.get(value)
            due = self._due(now, known=key is not None)
        if not due:
            return key
        # A request with a known key does not wait for a read another thread is making (its answer is staler by that
        # read's few milliseconds at most); one with an unknown key waits for it, then looks again.
        if not self._reload_lock.acquire(blocking=key is None):
            return key
        try:
            with self._cache_lock:
                due = self._due(now, known=value in self._by_value)
            if due:
                self._reload(now)
        finally:
            self._reload_lock.release()
        with self._cache_lock:
            return self._by_value.get(value)

    def value_of(self, name: str) -> str | None:
        """The value of the key named `name` (the local default key's, for in-process callers)."""
        with self._cache_lock:
            key = self._by_name.get(name)
        if key is None:
            with self._reload_lock:
                self._reload(self.clock())
            with self._cache_lock:
                key = self._by_name.get(name)
        return key.value if key else None

    def admit(self, value: str | None) -> tuple[ApiKey | None, Reply | None]:
        """(the key, None) when the request may go on; (None, the refusal) when it may not."""
        key = self.lookup(value) if value else None
        if key is None or not key.enabled:
            return None, _message(403, "Forbidden")
        refused = self._spend(key)
        return (None, refused) if refused else (key, None)

    def _spend(self, key: ApiKey) -> Reply | None:
        now = self.clock()
        limits = key.limits
        moment = dt.datetime.fromtimestamp(now, dt.UTC)
        start, end = quota_window(limits.quota_period, moment)
        with self._meter_lock:
            meter = self._meters.get(key.id)
            if meter is None:
                meter = self._meters[key.id] = _Meter(limits, tokens=float(limits.burst), updated=now)
            elif meter.limits != limits:  # the plan changed: new limits, the period's count kept
                meter.limits, meter.tokens = limits, min(meter.tokens, float(limits.burst))
            if meter.period_start != start:
                meter.period_start, meter.used = start, 0
            if limits.quota != NO_LIMIT and meter.used >= limits.quota:
                return _too_many("Limit Exceeded", (end - moment).total_seconds())
            if limits.rate_per_s != NO_LIMIT:
                elapsed = max(0.0, now - meter.updated)
                meter.tokens = min(float(limits.burst), meter.tokens + elapsed * limits.rate_per_s)
                meter.updated = now
                if meter.tokens < 1:
                    return _too_many("Too Many Requests", (1 - meter.tokens) / limits.rate_per_s)
                meter.tokens -= 1
            meter.used += 1
            self._schedule_flush()
        return None

    def usage(self) -> dict[str, dict[str, Any]]:
        """Requests counted per key id in its current quota period (as written to the usage file)."""
        with self._meter_lock:
            return {
                key_id: usage_record(meter.used, meter.period_start)
                for key_id, meter in self._meters.items()
                if meter.period_start is not None
            }

    def _schedule_flush(self) -> None:
        # Called holding the meter lock. The file is written at most once a second, off the request path.
        if self.usage_path is None or self._flush is not None:
            return
        self._flush = threading.Timer(USAGE_FLUSH_SECONDS, self.flush_usage)
        self._flush.daemon = True
        self._flush.start()

    def flush_usage(self) -> None:
        """Write what each key used to the usage file now (`loopml keys list` reads it locally)."""
        with self._meter_lock:
            timer, self._flush = self._flush, None
        if timer is not None:
            timer.cancel()
        if self.usage_path is None:
            return
        temporary = self.usage_path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        temporary.write_text(json.dumps(self.usage()))
        temporary.replace(self.usage_path)


class ApiGateway:
    """The local REST API: routes, API keys and usage plans as API Gateway applies them, then the function."""

    def __init__(self, cloud: LocalCloud, clock: Callable[[], float] = time.time) -> None:
        self.cloud = cloud
        self.enforcer = KeyEnforcer(
            ApiGatewayKeys(cloud.client("apigateway")), clock=clock, usage_path=cloud.state_dir / USAGE_FILE
        )

    @property
    def default_key(self) -> str | None:
        """The value of the key the local cloud provisions (`loopml-local`), which in-process callers send."""
        return self.enforcer.value_of(LOCAL_KEY_NAME)

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        if len(body) > MAX_BODY_BYTES:
            return _message(413, "Request Too Long")
        matched = match_route(method, urlsplit(path).path)
        if matched is None:
            # API Gateway answers unknown routes itself, without calling the function.
            return _message(403, "Missing Authentication Token")
        route, parameters = matched
        key = None
        if decl.API.api_key_required:
            header = decl.API.api_key_header.lower()
            value = next((v for k, v in headers.items() if k.lower() == header), None)
            key, refused = self.enforcer.admit(value)
            if refused is not None:
                return refused
        event = proxy_event(route, parameters, method, path, headers, body, key)
        try:
            reply = self.cloud.invoke_proxied(decl.API.function, event)
        except RuntimeError:
            return _message(502, "Internal server error")
        headers_out = {k: str(v) for k, v in (reply.get("headers") or {}).items()}
        for name, values in (reply.get("multiValueHeaders") or {}).items():
            headers_out[name] = ",".join(str(v) for v in values)
        payload = reply.get("body") or ""
        data = base64.b64decode(payload) if reply.get("isBase64Encoded") else payload.encode()
        return int(reply.get("statusCode", 502)), headers_out, data

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], Any]:
        """Call the API in-process (no socket); used by tests and the CLI when no server is running. Without
        `headers`, the request is JSON and carries the local cloud's default API key."""
        raw = json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else (body or b"")
        if headers is None:
            headers = {"Content-Type": "application/json"}
            if decl.API.api_key_required and (value := self.default_key):
                headers[decl.API.api_key_header] = value
        status, reply_headers, data = self.handle(method, path, headers, raw)
        return status, reply_headers, json.loads(data) if data else None


def _handler_class(gateway: ApiGateway) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "LoopML-local"
        # Headers and body leave in two writes: with Nagle's algorithm the body waits for the client's delayed ACK
        # of the headers, about 40 ms on every keep-alive request.
        disable_nagle_algorithm = True

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status, headers, data = gateway.handle(self.command, self.path, dict(self.headers.items()), body)
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        # Every method a route (or ANY) may declare.
        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

        def log_message(self, format: str, *args: Any) -> None:
            return  # the functions' own logs say what happened

    return Handler


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A fresh key and self-signed certificate for localhost and 127.0.0.1 (regenerated at every start)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "LoopML local API")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "api-cert.pem", directory / "api-key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    return cert_path, key_path


class ApiServer:
    """Serves the gateway on a socket, over TLS unless told otherwise."""

    def __init__(self, cloud: LocalCloud, host: str = "127.0.0.1", port: int = 8443, tls: bool = True) -> None:
        self.gateway = ApiGateway(cloud)
        self.httpd = ThreadingHTTPServer((host, port), _handler_class(self.gateway))
        self.cert_path: Path | None = None
        if tls:
            self.cert_path, key_path = self_signed_certificate(cloud.state_dir / "tls")
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.cert_path, key_path)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"{'https' if tls else 'http'}://{host}:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="loopml-api", daemon=True)

    def start(self) -> ApiServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.gateway.enforcer.flush_usage()
