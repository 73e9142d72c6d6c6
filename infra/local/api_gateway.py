"""The inference REST API, locally: HTTP(S) requests become API Gateway proxy events for the declared routes and go
to the declared function through the Lambda Invoke API, exactly as API Gateway's Lambda proxy integration does."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import re
import ssl
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from infra import declaration as decl
from infra.local.cloud import ACCOUNT, LocalCloud

MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit


def _route_pattern(path: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path) + "$")


ROUTES = [(route, _route_pattern(route.path)) for route in decl.API.routes]


def proxy_event(method: str, raw_path: str, headers: dict[str, str], body: bytes) -> dict[str, Any] | None:
    """The REST API (v1) proxy event for a request, or None when no declared route matches."""
    url = urlsplit(raw_path)
    for route, pattern in ROUTES:
        match = pattern.match(url.path)
        if match and route.method == method:
            query = dict(parse_qsl(url.query))
            try:
                text: str | None = body.decode("utf-8") if body else None
                encoded = False
            except UnicodeDecodeError:
                text, encoded = base64.b64encode(body).decode(), True
            return {
                "resource": route.path,
                "path": url.path,
                "httpMethod": method,
                "headers": headers,
                "multiValueHeaders": {k: [v] for k, v in headers.items()},
                "queryStringParameters": query or None,
                "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} or None,
                "pathParameters": match.groupdict() or None,
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
                    "identity": {
                        "sourceIp": headers.get("X-Forwarded-For", "127.0.0.1"),
                        "userAgent": headers.get("User-Agent", ""),
                    },
                },
                "body": text,
                "isBase64Encoded": encoded,
            }
    return None


class ApiGateway:
    def __init__(self, cloud: LocalCloud) -> None:
        self.cloud = cloud

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        if len(body) > MAX_BODY_BYTES:
            return 413, {"Content-Type": "application/json"}, b'{"message":"Request Too Long"}'
        event = proxy_event(method, path, headers, body)
        if event is None:
            # API Gateway answers unknown routes itself, without calling the function.
            return 403, {"Content-Type": "application/json"}, b'{"message":"Missing Authentication Token"}'
        try:
            reply = self.cloud.invoke(decl.API.function, event)
        except RuntimeError:
            return 502, {"Content-Type": "application/json"}, b'{"message": "Internal server error"}'
        headers_out = {k: str(v) for k, v in (reply.get("headers") or {}).items()}
        for key, values in (reply.get("multiValueHeaders") or {}).items():
            headers_out[key] = ",".join(str(v) for v in values)
        payload = reply.get("body") or ""
        data = base64.b64decode(payload) if reply.get("isBase64Encoded") else payload.encode()
        return int(reply.get("statusCode", 502)), headers_out, data

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, str], Any]:
        """Call the API in-process (no socket); used by tests and the CLI when no server is running."""
        raw = json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else (body or b"")
        status, headers, data = self.handle(method, path, {"Content-Type": "application/json"}, raw)
        return status, headers, json.loads(data) if data else None


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
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

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
