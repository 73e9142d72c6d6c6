"""Which version answers a request while a challenger is deployed: pure functions, stdlib only (it runs per request in
the predict function, beside onnxruntime and numpy).

Every request gets a bucket in [0, 10000) from a stable hash (BLAKE2b) and is answered by the challenger when its
bucket is below the deployment's weight times 100 (canary and A/B), else by the champion:

- **Sticky.** With a client key (the `X-LoopML-Key` header), the bucket hashes the model, the challenger version and
  the key, nothing else: the same client gets the same version on every request, from every container, for as long
  as the weight stays the same. All records of one request are answered by one version.
- **Monotone.** A bucket never changes during a deployment, so raising the weight (10 → 25 → 50) only moves clients
  from the champion to the challenger, and lowering it only moves them back: no client flips back and forth.
- **Fresh per deployment.** The challenger version is in the hash, so the next deployment draws a new sample of
  clients instead of sending the same ones first every time.
- **No key.** A request without a key is bucketed by its request id: requests spread at the weight, but one client
  may see both versions.
- **Shadow.** The champion answers every request and `shadow_version` names the challenger, to score the same
  records off the response path; the answer never depends on it.

Without a deployment the champion answers and nothing is shadowed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from loopml_core.models import ServingState

BUCKETS = 10_000  # weight is a whole percent: a bucket is a hundredth of a percent of traffic
CLIENT_KEY_HEADER = "X-LoopML-Key"
MAX_CLIENT_KEY_CHARS = 256
SHADOW = "shadow"  # DeliveryMode.SHADOW's value, compared as text: this module imports no pydantic model

Variant = Literal["champion", "challenger"]


@dataclass(frozen=True)
class Route:
    """Who answers a request: `answering_version` (what `X-Model-Version` says), as which variant, and the version
    to shadow-score the same records with, if any."""

    answering_version: int
    variant: Variant
    shadow_version: int | None = None


def bucket(model: str, challenger: int, value: str, *, keyed: bool = True) -> int:
    """The request's bucket in [0, BUCKETS): a stable hash of the model, the challenger version and the client key
    (or, with `keyed=False`, the request id), the same in every process and Python version."""
    kind = "key" if keyed else "request"
    digest = hashlib.blake2b(f"{model}\x1f{challenger}\x1f{kind}\x1f{value}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS  # 2**64 buckets folded into 10**4: a bias below 1e-15


def client_key(headers: Mapping[str, str] | None) -> str | None:
    """The client key of a request: the `X-LoopML-Key` header (any letter case), stripped, or None when absent or
    empty. Raises ValueError for a key longer than MAX_CLIENT_KEY_CHARS (a 400 for the caller)."""
    if not headers:
        return None
    wanted = CLIENT_KEY_HEADER.lower()
    for name, value in headers.items():
        if name.lower() == wanted and value is not None:
            key = value.strip()
            if len(key) > MAX_CLIENT_KEY_CHARS:
                raise ValueError(f"header {CLIENT_KEY_HEADER} is longer than {MAX_CLIENT_KEY_CHARS} characters")
            return key or None
    return None


def route(state: ServingState, *, client_key: str | None, request_id: str) -> Route:
    """Decide which version answers a request and whether the challenger shadow-scores it (see the module doc)."""
    deployment = state.deployment
    if deployment is None:
        return Route(state.champion, "champion")
    if deployment.mode == SHADOW:
        return Route(state.champion, "champion", shadow_version=deployment.version)
    if client_key is not None:
        drawn = bucket(state.model, deployment.version, client_key)
    else:
        drawn = bucket(state.model, deployment.version, request_id, keyed=False)
    if drawn < (deployment.weight or 0) * (BUCKETS // 100):
        return Route(deployment.version, "challenger")
    return Route(state.champion, "champion")
