"""Work a request leaves for after its response has been sent: a challenger's shadow scoring, say.

In Lambda, a thread the handler starts is frozen with the execution environment once the handler returns, and its
work may never run. An *internal extension* is the supported way to run code after the response: a thread of the
runtime process registers with the Lambda Extensions API during init, and an invocation is complete only when the
runtime *and* every extension have asked for the next event. The runtime posts the handler's response as soon as
the handler returns, so the caller has it while the extension thread does the deferred work; only then does the
thread ask for the next event. The work adds to the invocation's billed duration and counts against its timeout,
never to the caller's latency; the container takes its next request once the work is done.

Outside Lambda (the local cloud, tests, benchmarks) there is no Extensions API: a worker thread runs the work right
after the handler returns, which is what the caller of the local API observes too.

    after_response = AfterResponse.for_environment()

    @after_response.handler
    def lambda_handler(event, context):
        after_response.defer(lambda: score_in_shadow(...))
        return reply
"""

from __future__ import annotations

import contextvars
import functools
import json
import os
import queue
import threading
import time
import traceback
import urllib.request
from collections.abc import Callable
from typing import Any, Protocol

Task = Callable[[], None]
EXTENSIONS_API = "2020-01-01/extension"
EXTENSION_NAME = "loopml-after-response"
RETRY_PAUSE_S = 0.1  # after the Extensions API failed a call, before asking again


class Driver(Protocol):
    """Runs each invocation's deferred tasks once the invocation's response is on its way."""

    def submit(self, tasks: list[Task]) -> None: ...


class WorkerThreadDriver:
    """One daemon thread runs the tasks in the order invocations handed them over."""

    def __init__(self, on_error: Callable[[Exception], None]) -> None:
        self._on_error = on_error
        self._tasks: queue.Queue[list[Task]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def submit(self, tasks: list[Task]) -> None:
        if not tasks:
            return
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="after-response", daemon=True)
                self._thread.start()
        self._tasks.put(tasks)

    def _work(self) -> None:
        while True:
            tasks = self._tasks.get()
            try:
                run_all(tasks, self._on_error)
            finally:
                self._tasks.task_done()

    def wait(self) -> None:
        """Block until every task handed over so far has run (tests, benchmarks, the local cloud's shutdown)."""
        self._tasks.join()


class ExtensionDriver:
    """An internal Lambda extension: after each INVOKE event, waits for the invocation's tasks, runs them, and only
    then asks for the next event, which is what keeps the execution environment running for them."""

    def __init__(self, runtime_api: str, on_error: Callable[[Exception], None]) -> None:
        self._base = f"http://{runtime_api}/{EXTENSIONS_API}"
        self._on_error = on_error
        self._handed_over: queue.Queue[list[Task]] = queue.Queue()
        self._identifier = self._register()
        threading.Thread(target=self._loop, name=EXTENSION_NAME, daemon=True).start()

    def _register(self) -> str:
        # Internal extensions may register for INVOKE only (SHUTDOWN is for external ones). Must happen during init.
        request = urllib.request.Request(
            f"{self._base}/register",
            data=json.dumps({"events": ["INVOKE"]}).encode(),
            headers={"Lambda-Extension-Name": EXTENSION_NAME, "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5) as reply:
            identifier: str = reply.headers["Lambda-Extension-Identifier"]
        return identifier

    def _next_event(self) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{self._base}/event/next", headers={"Lambda-Extension-Identifier": self._identifier}
        )
        with urllib.request.urlopen(request) as reply:  # blocks until the next invocation, however long that is
            event: dict[str, Any] = json.loads(reply.read() or b"{}")
        return event

    def _loop(self) -> None:
        # This thread must live as long as the container: were it to stop asking for the next event, every later
        # invocation would run until its timeout. So nothing ends it but the process.
        while True:
            try:
                event = self._next_event()
                if event.get("eventType") == "INVOKE":
                    run_all(self._tasks_of(event), self._on_error)
            except Exception as error:
                _report(self._on_error, error)
                time.sleep(RETRY_PAUSE_S)

    def _tasks_of(self, event: dict[str, Any]) -> list[Task]:
        """What the invocation hands over; nothing if its handler never ran (the runtime failed it before) and the
        invocation's deadline passes first."""
        deadline_ms = event.get("deadlineMs")
        wait = max(0.0, deadline_ms / 1000 - time.time()) if isinstance(deadline_ms, int | float) else None
        try:
            return self._handed_over.get(timeout=wait)
        except queue.Empty:
            return []

    def submit(self, tasks: list[Task]) -> None:
        # Every invocation hands over its list, empty or not: the extension waits for it before asking for more.
        self._handed_over.put(tasks)


def run_all(tasks: list[Task], on_error: Callable[[Exception], None]) -> None:
    for task in tasks:
        try:
            task()
        except Exception as error:  # deferred work never fails the invocation whose response has already gone
            _report(on_error, error)


def _report(on_error: Callable[[Exception], None], error: Exception) -> None:
    try:
        on_error(error)
    except Exception:  # a failing report must not end the thread that runs deferred work either
        traceback.print_exc()


class AfterResponse:
    """Tasks deferred by the invocation running on this thread, handed to the driver when its handler returns."""

    def __init__(self, driver: Driver) -> None:
        self.driver = driver
        self._pending = threading.local()

    @classmethod
    def for_environment(cls, on_error: Callable[[Exception], None] = lambda error: None) -> AfterResponse:
        """An internal extension inside Lambda (AWS_LAMBDA_RUNTIME_API set, and the handler imported during init),
        a worker thread anywhere else."""
        runtime_api = os.environ.get("AWS_LAMBDA_RUNTIME_API")
        if runtime_api:
            try:
                return cls(ExtensionDriver(runtime_api, on_error))
            except OSError as error:
                # A function that cannot register still answers: its deferred work then runs in the invocation's
                # frozen-between-requests thread, late or, if the container is reclaimed first, never.
                _report(on_error, error)
        return cls(WorkerThreadDriver(on_error))

    def defer(self, task: Task) -> None:
        """Run `task` after this invocation's response has been sent."""
        tasks: list[Task] | None = getattr(self._pending, "tasks", None)
        if tasks is None:
            task()  # outside a wrapped handler there is no response to wait for
            return
        # The task runs on another thread, in a copy of this context: what the invocation set there (its log, its
        # environment, on the local cloud) still applies.
        context = contextvars.copy_context()
        tasks.append(lambda: context.run(task))

    def handler(self, function: Callable[..., Any]) -> Callable[..., Any]:
        """Wrap a Lambda handler: what it defers is handed over when it returns (or raises)."""

        @functools.wraps(function)
        def wrapped(event: Any, context: Any) -> Any:
            self._pending.tasks = []
            try:
                return function(event, context)
            finally:
                tasks, self._pending.tasks = self._pending.tasks, None
                self.driver.submit(tasks)

        return wrapped
