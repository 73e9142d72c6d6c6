"""Work deferred until after the response: the handler returns first, the work runs after, failures stay contained,
and inside Lambda an internal extension holds the invocation open until the work is done."""

from __future__ import annotations

import contextvars
import json
import queue
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from loopml_core.after_response import EXTENSION_NAME, AfterResponse, ExtensionDriver, WorkerThreadDriver

CALLER = contextvars.ContextVar("caller", default="none")


def test_the_handler_returns_before_its_deferred_work_runs():
    # Given a handler that defers work which waits until the test has seen the response
    driver = WorkerThreadDriver(on_error=lambda error: None)
    after = AfterResponse(driver)
    response_seen, ran = threading.Event(), []

    @after.handler
    def handler(event, context):
        CALLER.set(event["caller"])
        after.defer(lambda: (response_seen.wait(5), ran.append(CALLER.get())))
        return {"statusCode": 200}

    # When it is invoked
    reply = handler({"caller": "invocation-7"}, None)
    # Then the reply came back while the work had not run
    assert reply == {"statusCode": 200} and ran == []
    response_seen.set()
    driver.wait()
    # And the work ran after, in the invocation's context
    assert ran == ["invocation-7"]


def test_failing_deferred_work_is_reported_and_does_not_stop_the_next():
    errors: list[Exception] = []
    driver = WorkerThreadDriver(on_error=errors.append)
    after = AfterResponse(driver)
    ran = []

    @after.handler
    def handler(event, context):
        after.defer(lambda: 1 / 0)
        after.defer(lambda: ran.append("second"))
        return "ok"

    assert handler({}, None) == "ok"
    driver.wait()
    assert ran == ["second"] and isinstance(errors[0], ZeroDivisionError)


def test_outside_a_wrapped_handler_work_runs_at_once():
    after = AfterResponse(WorkerThreadDriver(on_error=lambda error: None))
    ran = []
    after.defer(lambda: ran.append(1))
    assert ran == [1]


class FakeExtensionsApi:
    """The Lambda Extensions API as the runtime process sees it: register, then event/next blocks until an event."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.events: queue.Queue[dict] = queue.Queue()
        self.waiting = threading.Semaphore(0)  # released each time the extension asks for the next event
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                api.calls.append(f"register {self.headers['Lambda-Extension-Name']} {body['events']}")
                self.send_response(200)
                self.send_header("Lambda-Extension-Identifier", "ext-1")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def do_GET(self):
                assert self.path == "/2020-01-01/extension/event/next"
                assert self.headers["Lambda-Extension-Identifier"] == "ext-1"
                api.calls.append("next")
                api.waiting.release()
                data = json.dumps(api.events.get()).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def invoke(self) -> None:
        self.events.put({"eventType": "INVOKE", "requestId": "r", "deadlineMs": 0})

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def extensions_api():
    api = FakeExtensionsApi()
    yield api
    api.close()


def test_inside_lambda_the_extension_asks_for_the_next_event_only_after_the_work(extensions_api):
    # Given the handler module loaded during init: the extension registers and waits for the first invocation
    after = AfterResponse(ExtensionDriver(extensions_api.address, on_error=lambda error: None))
    assert extensions_api.waiting.acquire(timeout=5)
    assert extensions_api.calls == [f"register {EXTENSION_NAME} ['INVOKE']", "next"]
    work_may_finish = threading.Event()

    @after.handler
    def handler(event, context):
        after.defer(lambda: (work_may_finish.wait(5), extensions_api.calls.append("shadow scored")))
        return "response"

    # When an invocation arrives and the handler returns its response
    extensions_api.invoke()
    assert handler({}, None) == "response"
    # Then the invocation is held open (no next request) until the deferred work is done
    assert not extensions_api.waiting.acquire(timeout=0.3)
    work_may_finish.set()
    assert extensions_api.waiting.acquire(timeout=5)
    assert extensions_api.calls[-2:] == ["shadow scored", "next"]

    # And an invocation that deferred nothing lets the extension move on at once
    @after.handler
    def plain(event, context):
        return "plain"

    extensions_api.invoke()
    assert plain({}, None) == "plain"
    assert extensions_api.waiting.acquire(timeout=5)
    assert extensions_api.calls[-1] == "next"


def test_an_invocation_that_never_reached_the_handler_does_not_hold_the_extension(extensions_api):
    # Given the extension waiting for work, and an invocation the runtime failed before the handler ran
    AfterResponse(ExtensionDriver(extensions_api.address, on_error=lambda error: None))
    assert extensions_api.waiting.acquire(timeout=5)
    extensions_api.events.put({"eventType": "INVOKE", "requestId": "r", "deadlineMs": int(time.time() * 1000)})
    # Then once its deadline has passed the extension asks for the next event anyway
    assert extensions_api.waiting.acquire(timeout=5)


def test_when_the_extensions_api_refuses_registration_the_function_still_serves(monkeypatch):
    errors: list[Exception] = []
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{unused.getsockname()[1]}"  # nothing listens here once the socket is closed
    monkeypatch.setenv("AWS_LAMBDA_RUNTIME_API", address)
    after = AfterResponse.for_environment(on_error=errors.append)
    assert isinstance(after.driver, WorkerThreadDriver) and isinstance(errors[0], OSError)
