"""Logger, tracer and metrics: created once, shared by every handler (POWERTOOLS_* settings come from the env).

Powertools' `Tracer()` imports the X-Ray SDK, and through it botocore, even when tracing is off; with tracing off its
decorators still open a dummy segment per call. `tracer` here is a `LazyTracer`: the real Tracer is created at the
first call of a decorated function, and only if tracing is on (`tracing_enabled`); otherwise the decorated functions
are called as they are. A cold start that does not trace pays for neither.
"""

from __future__ import annotations

import functools
import os
import threading
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from aws_lambda_powertools import Logger, Metrics

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

Function = TypeVar("Function", bound=Callable[..., Any])

# Read as Powertools reads them (`Tracer._is_tracer_disabled`): tracing needs a Lambda sandbox with an X-Ray daemon.
TRACE_DISABLED_ENV = "POWERTOOLS_TRACE_DISABLED"
LAMBDA_TASK_ROOT_ENV = "LAMBDA_TASK_ROOT"
EMULATOR_ENVS = ("AWS_SAM_LOCAL", "AWS_CHALICE_CLI_MODE")
TRUTHY = frozenset({"1", "y", "yes", "t", "true", "on"})


def tracing_enabled() -> bool:
    """Whether X-Ray tracing is on: in a Lambda sandbox (not an emulator) unless POWERTOOLS_TRACE_DISABLED says no."""
    if os.environ.get(TRACE_DISABLED_ENV, "false").strip().lower() in TRUTHY:
        return False
    return bool(os.environ.get(LAMBDA_TASK_ROOT_ENV)) and not any(os.environ.get(env) for env in EMULATOR_ENVS)


class LazyTracer:
    """Powertools' Tracer decorators, with the Tracer (and the X-Ray SDK) created only when tracing is on.

    Whether tracing is on is decided at the first call of a decorated function, when the function's environment is
    complete, and then kept for the life of the container, as Powertools' Tracer keeps it.
    """

    def __init__(self, enabled: Callable[[], bool] = tracing_enabled) -> None:
        self._enabled = enabled
        self._tracer: Tracer | None = None
        self._decided: bool | None = None
        self._lock = threading.Lock()

    @property
    def active(self) -> Tracer | None:
        """The Powertools Tracer when tracing is on (created on first use), else None."""
        if self._decided is None:
            with self._lock:
                if self._decided is None:
                    if self._enabled():
                        from aws_lambda_powertools import Tracer

                        self._tracer = Tracer()
                    self._decided = True
        return self._tracer

    def capture_lambda_handler(self, handler: Function) -> Function:
        """`Tracer.capture_lambda_handler` when tracing is on; the handler itself otherwise."""
        return self._wrap(handler, lambda tracer, function: tracer.capture_lambda_handler(function))

    def capture_method(self, method: Function) -> Function:
        """`Tracer.capture_method` when tracing is on; the method itself otherwise."""
        return self._wrap(method, lambda tracer, function: tracer.capture_method(function))

    def _wrap(self, function: Function, decorate: Callable[[Tracer, Function], Callable[..., Any]]) -> Function:
        chosen: list[Callable[..., Any]] = []

        @functools.wraps(function)
        def call(*args: Any, **kwargs: Any) -> Any:
            if not chosen:
                tracer = self.active
                chosen.append(function if tracer is None else decorate(tracer, function))
            return chosen[0](*args, **kwargs)

        return call  # type: ignore[return-value]


logger = Logger()
tracer = LazyTracer()
metrics = Metrics()

# Some invocations (a health check, a drift check that found nothing) have no metric to publish, on purpose.
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)
