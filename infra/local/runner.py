"""Runs the declared handlers in-process, as Lambda would: each with its function's environment, its own log stream
and a Lambda context, loaded once from its code directory."""

from __future__ import annotations

import collections
import contextlib
import contextvars
import importlib.util
import io
import json
import os
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from infra import declaration as decl

ACCOUNT = "123456789012"
REGION = "us-east-1"
# No X-Ray daemon runs locally; everything else in a function's environment is exactly what moto holds for it.
LOCAL_ONLY_ENV = {"POWERTOOLS_TRACE_DISABLED": "true"}


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


class HandlerRunner:
    """Loads each declared handler once, as Lambda would from its code directory, and runs it in-process."""

    def __init__(self, log_stream: io.TextIOBase | Any, ship_logs: Callable[[str, str], None] | None = None) -> None:
        self._modules: dict[str, ModuleType] = {}
        self._ship_logs = ship_logs  # (function name, what it printed): to CloudWatch Logs, as Lambda does
        self._by_physical_name = {spec.physical_name(): spec for spec in decl.FUNCTIONS.values()}
        # moto is not thread-safe; handlers are, as in Lambda where each runs in its own container. So calls into moto
        # take this lock and a handler's own work does not: a prediction is not kept waiting by a training.
        self.moto_lock = MotoLock()
        self._import_lock = threading.Lock()
        # One execution environment per function, as a function with one warm container has: its invocations take
        # turns (Powertools' resolver, for one, keeps the current request in class state), other functions' do not.
        self._environments = {spec.key: threading.RLock() for spec in decl.FUNCTIONS.values()}
        self.log_stream = log_stream
        self.invocations: list[Invocation] = []
        self._running: collections.Counter[str] = collections.Counter()  # function key -> invocations under way
        self._most_running: collections.Counter[str] = collections.Counter()
        self._running_lock = threading.Lock()
        self._log_lock = threading.Lock()  # invocations on several threads write one log file

    def running(self, function_key: str) -> int:
        """How many invocations of the function are under way now."""
        with self._running_lock:
            return self._running[function_key]

    def most_running(self, function_key: str) -> int:
        """The most invocations of the function that were ever under way at once (1: they took turns)."""
        with self._running_lock:
            return self._most_running[function_key]

    def knows(self, function_name: str) -> bool:
        return function_name in self._by_physical_name

    def _module(self, spec: decl.FunctionSpec) -> ModuleType:
        with self._import_lock:
            return self._load(spec)

    def _load(self, spec: decl.FunctionSpec) -> ModuleType:
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
        with (
            self.moto_lock.released(),
            self._environments[spec.key],
            function_environment(
                {
                    **environment,
                    **LOCAL_ONLY_ENV,
                    "AWS_LAMBDA_FUNCTION_NAME": function_name,
                    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
                }
            ),
        ):
            started = time.perf_counter()
            output = InvocationLog(lambda text: self._ship_late(function_name, text))
            errored = False
            with self._running_lock:
                self._running[spec.key] += 1
                self._most_running[spec.key] = max(self._most_running[spec.key], self._running[spec.key])
            try:
                with _captured_stdout(output):
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
            finally:
                with self._running_lock:
                    self._running[spec.key] -= 1
            logs = output.close()
            if logs and self._ship_logs is not None:
                self._ship_logs(function_name, logs)
            with self._log_lock:
                self.log_stream.write(logs)
                if errored:
                    self.log_stream.write(f"[{function_name}] ERROR {reply}\n")
                self.log_stream.flush()
            self.invocations.append(Invocation(spec.key, time.perf_counter() - started, errored))
            return reply, errored, logs

    def _ship_late(self, function_name: str, text: str) -> None:
        """What an invocation printed after its handler returned (its after-response work), as it comes."""
        if self._ship_logs is not None:
            self._ship_logs(function_name, text)
        with self._log_lock:
            self.log_stream.write(text)
            self.log_stream.flush()


class InvocationLog:
    """What one invocation prints. Kept while its handler runs and shipped when it returns, as Lambda does; what it
    prints later, from work deferred until after its response (`loopml_core.after_response`), goes out as it comes."""

    def __init__(self, ship_late: Callable[[str], None]) -> None:
        self._buffer = io.StringIO()
        self._ship_late = ship_late
        self._closed = False
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            if not self._closed:
                return self._buffer.write(text)
        self._ship_late(text)
        return len(text)

    def flush(self) -> None:
        return

    def close(self) -> str:
        """What the handler printed; later writes are shipped one by one."""
        with self._lock:
            self._closed = True
            return self._buffer.getvalue()


# The log of the invocation this code runs for, if any. A context variable rather than a thread-local: work an
# invocation defers until after its response runs in a copy of its context, on another thread (after_response).
_invocation_log: contextvars.ContextVar[InvocationLog | None] = contextvars.ContextVar("invocation_log", default=None)


class _ThreadRoutedStdout:
    """sys.stdout that sends what a handler prints to its invocation's log buffer and everything else where it went.

    Handlers run on several threads (S3 notifications, Step Functions steps); `contextlib.redirect_stdout` would
    swap stdout for the whole process and swallow what the CLI or `loopml local up` prints meanwhile.
    """

    def __init__(self, default: Any) -> None:
        self._default = default

    def _target(self) -> Any:
        return _invocation_log.get() or self._default

    def write(self, text: str) -> int:
        written: int = self._target().write(text)
        return written

    def flush(self) -> None:
        self._target().flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target(), name)


@contextlib.contextmanager
def _captured_stdout(log: InvocationLog) -> Iterator[None]:
    if not isinstance(sys.stdout, _ThreadRoutedStdout):
        sys.stdout = _ThreadRoutedStdout(sys.stdout)
    token = _invocation_log.set(log)
    try:
        yield
    finally:
        _invocation_log.reset(token)


class MotoLock:
    """The lock every call into moto holds (moto's backends are not thread-safe), re-entrant for the thread holding it.

    A call into moto may run a handler (Lambda's Invoke API, a Step Functions task): the handler runs with the lock
    `released()`, so that its own compute never holds up other invocations; its AWS calls take the lock again.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()

    @contextlib.contextmanager
    def released(self) -> Iterator[None]:
        """Give the lock up entirely (however deeply this thread holds it) for the block, then take it back."""
        if not self._lock._is_owned():  # type: ignore[attr-defined]
            yield
            return
        # What threading.Condition uses to wait on an RLock: release every level at once, restore them after.
        state = self._lock._release_save()  # type: ignore[attr-defined]
        try:
            yield
        finally:
            self._lock._acquire_restore(state)  # type: ignore[attr-defined]

    def guarding(self, function: Callable[..., Any]) -> Callable[..., Any]:
        """`function`, called with this lock held."""

        def guarded(*args: Any, **kwargs: Any) -> Any:
            with self:
                return function(*args, **kwargs)

        return guarded


class ThreadRoutedEnviron(MutableMapping[str, str]):
    """os.environ that shows each handler invocation its own function's environment, on the thread it runs on.

    Lambda gives each function its own process; here several functions run at once in one, so the variables a
    function is configured with are an overlay seen only by the invocation's thread. Everything else reads and writes
    the process environment as usual.
    """

    def __init__(self, process: MutableMapping[str, str]) -> None:
        self.process = process
        # Per context, like the invocation's log: deferred work sees the environment of the invocation that made it.
        self._overlay_var: contextvars.ContextVar[dict[str, str | None] | None] = contextvars.ContextVar(
            f"environ_overlay_{id(self)}", default=None
        )

    def _overlay(self) -> dict[str, str | None] | None:
        return self._overlay_var.get()

    def __getitem__(self, key: str) -> str:
        overlay = self._overlay()
        if overlay is not None and key in overlay:
            value = overlay[key]
            if value is None:
                raise KeyError(key)
            return value
        return self.process[key]

    def __setitem__(self, key: str, value: str) -> None:
        overlay = self._overlay()
        if overlay is None:
            self.process[key] = value
        else:
            overlay[key] = value

    def __delitem__(self, key: str) -> None:
        overlay = self._overlay()
        if overlay is None:
            del self.process[key]
            return
        if key not in self:
            raise KeyError(key)
        overlay[key] = None

    def __iter__(self) -> Iterator[str]:
        overlay = self._overlay() or {}
        yield from (key for key, value in overlay.items() if value is not None)
        yield from (key for key in self.process if key not in overlay)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def copy(self) -> dict[str, str]:
        return dict(self)

    @contextlib.contextmanager
    def overlay(self, values: dict[str, str]) -> Iterator[None]:
        token = self._overlay_var.set(dict(values))  # a function sees its own configuration, not its caller's
        try:
            yield
        finally:
            self._overlay_var.reset(token)


@contextlib.contextmanager
def function_environment(values: dict[str, str]) -> Iterator[None]:
    """The function's environment for an invocation: its own thread's view when os.environ is routed per thread."""
    if isinstance(os.environ, ThreadRoutedEnviron):
        with os.environ.overlay(values):
            yield
    else:
        with environment_overlay(values):
            yield


@contextlib.contextmanager
def environment_overlay(values: dict[str, str]) -> Iterator[None]:
    """Set `values` in the process environment for the block (every thread sees them)."""
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
