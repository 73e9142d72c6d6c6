"""The inference REST API as an API Gateway resource on moto: the declared routes, methods and stage, and a default
API key.

The local gateway (`infra.local.api_gateway`) serves requests itself; this resource exists so that what hangs off the
API on AWS (usage plans and their API keys) is created, listed and revoked through the same API Gateway calls, and
the local gateway reads the keys and their limits from here to enforce them.

Locally one key is there from the start, `loopml-local`, with the declared default limits: the CLI and in-process
callers send it unless told to use another, so the local cloud works out of the box while every request still
carries a key, as on AWS.
"""

from __future__ import annotations

from typing import Any

from infra import declaration as decl
from infra.keys import LOCAL_KEY_NAME, ApiGatewayKeys


def provision_rest_api(apigateway: Any, function_arn: str, region: str) -> str:
    """Create the declared REST API with its routes and stage, and the default local key; returns the API's id."""
    api_id: str = apigateway.create_rest_api(
        name=decl.API.name, endpointConfiguration={"types": ["REGIONAL"]}, apiKeySource="HEADER"
    )["id"]
    resources = {item["path"]: item["id"] for item in apigateway.get_resources(restApiId=api_id)["items"]}
    uri = f"arn:aws:apigateway:{region}:lambda:path/2015-03-31/functions/{function_arn}/invocations"
    for route in decl.API.routes:
        parent = "/"
        for part in route.path.strip("/").split("/"):
            path = parent.rstrip("/") + "/" + part
            if path not in resources:
                created = apigateway.create_resource(restApiId=api_id, parentId=resources[parent], pathPart=part)
                resources[path] = created["id"]
            parent = path
        apigateway.put_method(
            restApiId=api_id,
            resourceId=resources[route.path],
            httpMethod=route.method,
            authorizationType="AWS_IAM",
            apiKeyRequired=decl.API.api_key_required,
        )
        apigateway.put_integration(
            restApiId=api_id,
            resourceId=resources[route.path],
            httpMethod=route.method,
            type="AWS_PROXY",
            integrationHttpMethod="POST",
            uri=uri,
        )
    apigateway.create_deployment(restApiId=api_id, stageName=decl.API.stage)
    ApiGatewayKeys(apigateway, api_id=api_id).create(LOCAL_KEY_NAME, decl.API.default_key_limits)
    return api_id


def local_api_key(apigateway: Any) -> str:
    """The value of the local cloud's default key (what `loopml local up` shows, and clients send locally)."""
    key = ApiGatewayKeys(apigateway).get(LOCAL_KEY_NAME, include_value=True)
    assert key.value is not None
    return key.value
