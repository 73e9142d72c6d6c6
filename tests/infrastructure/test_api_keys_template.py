"""API keys in the template: every method requires one, sent in the header; no key or plan is baked into the stack."""

from __future__ import annotations

from cfn_template import Template

from infra.declaration import API


def test_every_method_requires_an_api_key_as_declared(template: Template) -> None:
    # Given the declaration asks for API keys besides IAM
    assert API.api_key_required is True
    methods = template.of_type("AWS::ApiGateway::Method")
    # Then every method of the API requires both
    assert len(methods) == len(API.routes)
    for method in methods.values():
        props = method["Properties"]
        assert props["ApiKeyRequired"] is True, props["HttpMethod"]
        assert props["AuthorizationType"] == "AWS_IAM"


def test_keys_are_read_from_the_x_api_key_header(template: Template) -> None:
    api = template.one("AWS::ApiGateway::RestApi", Name=API.name)
    assert template.props(api)["ApiKeySourceType"] == "HEADER"
    assert API.api_key_header == "x-api-key"  # the header API Gateway reads when the source is HEADER


def test_no_key_and_no_usage_plan_is_baked_into_the_template(template: Template) -> None:
    # Keys are secrets made per client at run time (`loopml keys create`), each with its own usage plan.
    assert template.of_type("AWS::ApiGateway::ApiKey") == {}
    assert template.of_type("AWS::ApiGateway::UsagePlan") == {}
    assert template.of_type("AWS::ApiGateway::UsagePlanKey") == {}


def test_the_stage_still_throttles_all_clients_together(template: Template) -> None:
    # Per-key plans limit each client; the stage's own throttle bounds them all (and any key's plan above it).
    stage = template.props(template.one("AWS::ApiGateway::Stage", StageName=API.stage))
    [settings] = [s for s in stage["MethodSettings"] if s["HttpMethod"] == "*" and s["ResourcePath"] == "/*"]
    assert settings["ThrottlingRateLimit"] == API.throttle_rate_per_s
    assert settings["ThrottlingBurstLimit"] == API.throttle_burst
    assert API.default_key_limits.rate_per_s <= API.throttle_rate_per_s
    assert API.default_key_limits.burst <= API.throttle_burst


def test_api_gateways_own_429s_say_when_to_retry(template: Template) -> None:
    # As the local gateway's do: a client tested locally finds Retry-After on AWS too
    responses = {
        template.props(logical_id)["ResponseType"]: template.props(logical_id)
        for logical_id in template.of_type("AWS::ApiGateway::GatewayResponse")
    }
    assert responses["THROTTLED"]["ResponseParameters"] == {"gatewayresponse.header.Retry-After": "'1'"}
    quota_wait = responses["QUOTA_EXCEEDED"]["ResponseParameters"]["gatewayresponse.header.Retry-After"]
    assert quota_wait == "'86400'"  # the declared default quota period, a day
