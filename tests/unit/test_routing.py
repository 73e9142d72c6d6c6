"""Routing a request during a deployment: split ratios, stickiness per client key, monotone ramps, shadow."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import uuid

import pytest

from loopml_core.models import DeliveryMode, Deployment, ServingState
from loopml_core.routing import MAX_CLIENT_KEY_CHARS, Route, bucket, client_key, route

KEYS = [f"client-{i}" for i in range(100_000)]


def state(mode: DeliveryMode | None, weight: int | None = None, challenger: int = 3) -> ServingState:
    deployment = None
    if mode is not None:
        deployment = Deployment(
            model="churn",
            version=challenger,
            mode=mode,
            weight=weight,
            since="2026-01-01T00:00:00Z",
            changed_at="2026-01-01T00:00:00Z",
            by="test",
            reason="",
        )
    return ServingState(model="churn", champion=2, deployment=deployment)


def within_five_sigma(hits: int, n: int, p: float) -> bool:
    """A binomial count within 5 standard deviations of its mean: a false failure about once in 1.7 million runs."""
    return abs(hits - n * p) <= 5 * math.sqrt(n * p * (1 - p))


def test_without_a_deployment_the_champion_answers_everything():
    serving = state(None)
    assert {route(serving, client_key=k, request_id=k) for k in KEYS[:1000]} == {Route(2, "champion", None)}
    assert route(serving, client_key=None, request_id="r") == Route(2, "champion", None)


@pytest.mark.parametrize(
    ("mode", "weight"),
    [
        (DeliveryMode.CANARY, 1),
        (DeliveryMode.CANARY, 10),
        (DeliveryMode.AB, 50),
        (DeliveryMode.CANARY, 90),
        (DeliveryMode.AB, 99),
    ],
)
def test_keyed_clients_split_at_the_weight_within_a_binomial_tolerance(mode, weight):
    serving = state(mode, weight)
    routes = [route(serving, client_key=k, request_id="same-request") for k in KEYS]
    challenger = sum(r.variant == "challenger" for r in routes)
    assert within_five_sigma(challenger, len(KEYS), weight / 100), challenger
    assert all(r.answering_version == (3 if r.variant == "challenger" else 2) for r in routes)
    assert all(r.shadow_version is None for r in routes)


def test_requests_without_a_key_spread_by_request_id():
    serving = state(DeliveryMode.CANARY, 30)
    routes = [route(serving, client_key=None, request_id=uuid.uuid4().hex) for _ in range(100_000)]
    assert within_five_sigma(sum(r.variant == "challenger" for r in routes), len(routes), 0.3)


def test_a_client_key_always_gets_the_same_version_whatever_the_request():
    serving = state(DeliveryMode.CANARY, 50)
    for key in KEYS[:200]:
        answers = {route(serving, client_key=key, request_id=uuid.uuid4().hex).answering_version for _ in range(20)}
        assert len(answers) == 1


def test_the_bucket_is_the_same_in_every_process():
    """Stickiness across containers: no per-process salt (Python's str hash would have one)."""
    here = [bucket("churn", 3, k) for k in KEYS[:50]]
    code = (
        "from loopml_core.routing import bucket; "
        "print(','.join(str(bucket('churn', 3, f'client-{i}')) for i in range(50)))"
    )
    for seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        assert [int(b) for b in out.strip().split(",")] == here
    assert min(here) >= 0 and max(here) < 10_000


def test_raising_the_weight_only_moves_clients_from_champion_to_challenger():
    keys = KEYS[:20_000]
    before: set[str] = set()
    for weight in (1, 2, 5, 10, 25, 50, 75, 90, 99):
        serving = state(DeliveryMode.CANARY, weight)
        now = {k for k in keys if route(serving, client_key=k, request_id="r").variant == "challenger"}
        assert before <= now  # nobody who had the challenger goes back to the champion
        before = now
    assert within_five_sigma(len(before), len(keys), 0.99)


def test_a_new_challenger_draws_a_fresh_sample_of_clients():
    keys = KEYS[:20_000]
    first = {
        k for k in keys if route(state(DeliveryMode.AB, 50, 3), client_key=k, request_id="r").variant == "challenger"
    }
    second = {
        k for k in keys if route(state(DeliveryMode.AB, 50, 4), client_key=k, request_id="r").variant == "challenger"
    }
    both = len(first & second)
    assert within_five_sigma(both, len(keys), 0.25)  # independent draws: a quarter is in both, not a half


def test_shadow_never_changes_the_answer_and_always_names_the_challenger():
    shadow, alone = state(DeliveryMode.SHADOW), state(None)
    for key in [*KEYS[:5000], None]:
        request = uuid.uuid4().hex
        shadowed = route(shadow, client_key=key, request_id=request)
        assert shadowed.answering_version == route(alone, client_key=key, request_id=request).answering_version == 2
        assert (shadowed.variant, shadowed.shadow_version) == ("champion", 3)


def test_the_client_key_comes_from_the_header_in_any_case():
    assert client_key({"X-LoopML-Key": "acme"}) == "acme"
    assert client_key({"x-loopml-key": " acme "}) == "acme"
    assert client_key({"Content-Type": "application/json"}) is None
    assert client_key({"X-LoopML-Key": "  "}) is None
    assert client_key(None) is None
    with pytest.raises(ValueError, match="X-LoopML-Key"):
        client_key({"X-LoopML-Key": "k" * (MAX_CLIENT_KEY_CHARS + 1)})


def test_routing_imports_nothing_beyond_the_standard_library():
    """It runs per request in the predict function: no pydantic, numpy or AWS SDK comes in with it."""
    code = (
        "import sys, loopml_core.routing; "
        "print(','.join(m for m in ('pydantic', 'numpy', 'boto3', 'loopml_core.models') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == ""
