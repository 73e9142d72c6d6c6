"""Logger, tracer and metrics: created once, shared by every handler (POWERTOOLS_* settings come from the env)."""

import warnings

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger()
tracer = Tracer()
metrics = Metrics()

# Some invocations (a health check, a drift check that found nothing) have no metric to publish, on purpose.
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)
