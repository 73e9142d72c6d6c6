"""Logger, tracer and metrics: created once, shared by every handler (POWERTOOLS_* settings come from the env)."""

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger()
tracer = Tracer()
metrics = Metrics()
