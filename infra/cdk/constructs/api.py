"""The inference REST API: the declared routes only, each a Lambda proxy integration of the serving function.

Every method requires IAM (SigV4) authorization and, as declared, an API key sent in the `x-api-key` header (the
API's key source is HEADER). The template holds no key and no usage plan: keys are secrets made per client at run
time (`loopml keys create NAME --rate R --burst B --quota N/day`), each with its own usage plan attached to this
stage, through API Gateway's API. A default usage plan here would not help a deployer: a key must be in a plan to
call the API, but a shared plan would give every key the same limits (the point of keys is per-client limits), the
CLI would still have to create each key and attach it at run time, and a stack-owned plan that run-time keys hang
off would tie those keys' lives to stack updates. Until a key is created, no request gets through: the stack is
closed by default. Plans the CLI created name this stage; revoke the keys (`loopml keys revoke`) before destroying
the stack, or delete those plans by hand.
"""

from __future__ import annotations

import re

from aws_cdk import RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.cdk import nag
from infra.declaration import API, Route

PATH_PARAMETER = re.compile(r"{(\w+)}")
QUOTA_RETRY_AFTER_S = {"DAY": 86_400, "WEEK": 604_800, "MONTH": 2_592_000}


class InferenceApi(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, function: lambda_.IFunction, log_retention: logs.RetentionDays
    ) -> None:
        super().__init__(scope, construct_id)
        access_logs = self._build_access_log_group(log_retention)
        self.rest_api = self._build_rest_api(access_logs)
        self._validator = self._build_request_validator()
        self._build_throttle_responses()
        # One invoke permission for the whole API rather than two per method.
        self._integration = apigw.LambdaIntegration(function, proxy=True, scope_permission_to_method=False)
        for route in API.routes:
            self._build_route(route)

    def _build_access_log_group(self, log_retention: logs.RetentionDays) -> logs.LogGroup:
        return logs.LogGroup(self, "AccessLogs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY)

    def _build_rest_api(self, access_logs: logs.ILogGroup) -> apigw.RestApi:
        rest_api = apigw.RestApi(
            self,
            "RestApi",
            rest_api_name=API.name,
            description="LoopML inference: serves the champion of each registered model",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            # Clients send their key in the x-api-key header (not through a Lambda authorizer).
            api_key_source_type=apigw.ApiKeySourceType.HEADER,
            # The CloudWatch role is an account-wide API Gateway setting, not something one app should own.
            cloud_watch_role=False,
            deploy_options=apigw.StageOptions(
                stage_name=API.stage,
                throttling_rate_limit=API.throttle_rate_per_s,
                throttling_burst_limit=API.throttle_burst,
                access_log_destination=apigw.LogGroupLogDestination(access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=True,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=True,
                ),
                tracing_enabled=True,
                metrics_enabled=True,
            ),
        )
        stage = rest_api.deployment_stage
        nag.acknowledge(
            stage,
            "AwsSolutions-APIG6",
            "Access logging is on; execution logging needs the account-wide API Gateway CloudWatch role, "
            "which this app deliberately does not own, and the handler logs every request itself.",
        )
        nag.acknowledge(
            stage,
            "AwsSolutions-APIG3",
            "Every method requires IAM (SigV4) authorization and the stage is throttled as declared; a WAF web ACL "
            "would add a fixed monthly cost to an internal, low-volume API without blocking anything more.",
        )
        return rest_api

    def _build_throttle_responses(self) -> None:
        """API Gateway's own 429s carry `Retry-After`, as the local gateway's do. API Gateway can only send a fixed
        value: a second past the rate limit, and the declared quota period's length past a key's quota (the local
        gateway, which knows when the period resets, sends the exact wait)."""
        self.rest_api.add_gateway_response(
            "Throttled", type=apigw.ResponseType.THROTTLED, response_headers={"Retry-After": "'1'"}
        )
        self.rest_api.add_gateway_response(
            "QuotaExceeded",
            type=apigw.ResponseType.QUOTA_EXCEEDED,
            response_headers={"Retry-After": f"'{QUOTA_RETRY_AFTER_S[API.default_key_limits.quota_period]}'"},
        )

    def _build_request_validator(self) -> apigw.RequestValidator:
        return self.rest_api.add_request_validator(
            "RequestValidator", validate_request_parameters=True, validate_request_body=True
        )

    def _build_route(self, route: Route) -> apigw.Method:
        resource = self.rest_api.root.resource_for_path(route.path)
        method = resource.add_method(
            route.method,
            self._integration,
            # Callers are AWS principals (the CLI, other services), so IAM signs and authorises every request.
            authorization_type=apigw.AuthorizationType.IAM,
            # Besides IAM, each client's key carries its usage plan: its own rate, burst and quota.
            api_key_required=API.api_key_required,
            request_validator=self._validator,
            request_parameters={f"method.request.path.{name}": True for name in PATH_PARAMETER.findall(route.path)},
        )
        nag.acknowledge(
            method,
            "AwsSolutions-COG4",
            "The API uses IAM (SigV4) authorization: its callers are AWS principals, not Cognito end users.",
        )
        return method
