"""Checkpoints of the audit chain's head, kept outside the registry table.

The registry's audit records each hash the one before, so an edited or deleted record breaks the chain; but someone
who may write the table could delete the newest records and rewrite the HEAD item, and the shorter chain would
verify. After every commit the registry therefore checkpoints its new head `(seq, hash)` here, and `verify_audit`
compares the table with every checkpoint: a record that differs from its checkpoint, or a chain that ends before the
newest checkpoint, is named.

In the cloud the checkpoints are objects in a versioned bucket under S3 Object Lock (default retention, declared in
`infra/declaration.py`), which no function role may delete; docs/governance.md describes the trust model.

Each checkpoint is one object whose key carries all it says — `audit/checkpoints/<seq:012d>/<hash>/<at>.json` — so:
- reading them back is a LIST per 1,000 sequence numbers, never a GET per checkpoint;
- a second checkpoint for the same sequence number (a forger with `s3:PutObject` trying to vouch for a rewritten
  history) is a second key beside the first, never a replacement of it: the original stays in every listing.
The object's body repeats the three fields as JSON, for people reading the bucket.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from loopml_core.adapters.object_store import ObjectStore

CHECKPOINT_PREFIX = "audit/checkpoints/"
AUDIT_BUCKET_ENV = "AUDIT_BUCKET"  # set by the declaration for the functions granted `audit_checkpoints`
SEQ_DIGITS = 12
GROUP_DIGITS = 9  # a key prefix of the first 9 of 12 digits holds the checkpoints of 1,000 sequence numbers
GROUP_SIZE = 10 ** (SEQ_DIGITS - GROUP_DIGITS)
MAX_GROUP_LISTINGS = 4  # a range wider than this many prefixes is read by one listing from its start instead


@dataclass(frozen=True, order=True)
class Checkpoint:
    """The audit chain's head as it was at `at`: record `seq` had hash `hash`."""

    seq: int
    hash: str
    at: str


def checkpoint_key(checkpoint: Checkpoint) -> str:
    return f"{CHECKPOINT_PREFIX}{checkpoint.seq:0{SEQ_DIGITS}d}/{checkpoint.hash}/{checkpoint.at}.json"


def parse_checkpoint_key(key: str) -> Checkpoint | None:
    """The checkpoint a key names, or None for a key that is not one (e.g. written by hand)."""
    parts = key.removeprefix(CHECKPOINT_PREFIX).split("/")
    if not key.startswith(CHECKPOINT_PREFIX) or len(parts) != 3 or not parts[2].endswith(".json"):
        return None
    seq, digest, name = parts
    if len(seq) != SEQ_DIGITS or not seq.isdigit() or not digest:
        return None
    return Checkpoint(int(seq), digest, name.removesuffix(".json"))


class AuditAnchor(ABC):
    """Where the audit chain's head is checkpointed, append-only: nothing here deletes or replaces a checkpoint."""

    @abstractmethod
    def checkpoint(self, seq: int, hash: str, at: str) -> None:
        """Record that the chain's record `seq` has hash `hash` (as of `at`). Writing the same checkpoint again is
        harmless; writing another hash for the same `seq` adds a second checkpoint and removes nothing."""

    @abstractmethod
    def checkpoints(self, from_seq: int = 1, to_seq: int | None = None) -> list[Checkpoint]:
        """Every checkpoint ever written with `from_seq <= seq <= to_seq` (no upper bound when None), ordered by
        (seq, hash, at). A sequence number checkpointed with two hashes appears twice: that is evidence. Read a long
        history in ranges (verify reads the range of each page of the chain) to keep memory bounded."""


class S3AuditAnchor(AuditAnchor):
    """Checkpoints as objects in the audit bucket (versioned, under Object Lock in the cloud)."""

    def __init__(self, bucket: str, store: ObjectStore | Callable[[], ObjectStore] | None = None) -> None:
        """`store` may be a callable that makes it, so a registry that never commits nor verifies makes no client."""
        self.bucket = bucket
        self._store = store

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> S3AuditAnchor:
        """The anchor a registry-writing function's declared environment names (its `audit_checkpoints` grant)."""
        anchor = cls.if_granted(environ)
        if anchor is None:
            raise RuntimeError(
                f"{AUDIT_BUCKET_ENV} is not set: a function that writes the registry must be granted "
                "audit_checkpoints in infra/declaration.py"
            )
        return anchor

    @classmethod
    def if_granted(cls, environ: Mapping[str, str] | None = None) -> S3AuditAnchor | None:
        """The anchor, for code shared by functions that write the registry and functions that only read it."""
        bucket = (os.environ if environ is None else environ).get(AUDIT_BUCKET_ENV)
        return cls(bucket) if bucket else None

    @property
    def store(self) -> ObjectStore:
        if self._store is None:
            from loopml_core.adapters.object_store import S3ObjectStore

            self._store = S3ObjectStore()
        elif not isinstance(self._store, ObjectStore):
            self._store = self._store()
        return self._store

    def checkpoint(self, seq: int, hash: str, at: str) -> None:
        checkpoint = Checkpoint(seq, hash, at)
        body = json.dumps({"seq": seq, "hash": hash, "at": at}, sort_keys=True).encode()
        self.store.put(self.bucket, checkpoint_key(checkpoint), body, content_type="application/json")

    def checkpoints(self, from_seq: int = 1, to_seq: int | None = None) -> list[Checkpoint]:
        first_group = max(from_seq, 0) // GROUP_SIZE
        if to_seq is not None and to_seq // GROUP_SIZE - first_group < MAX_GROUP_LISTINGS:
            # A page of the chain: the key prefixes of its thousands of sequence numbers, one LIST each.
            keys = [
                key
                for group in range(first_group, to_seq // GROUP_SIZE + 1)
                for key in self.store.list_keys(self.bucket, f"{CHECKPOINT_PREFIX}{group:0{GROUP_DIGITS}d}")
            ]
        else:
            # Everything after `from_seq - 1` ('~' sorts after every character of a hash and a timestamp): as many
            # LISTs as there are checkpoints, however wide the range (a tampered sequence number may be huge).
            start_after = f"{CHECKPOINT_PREFIX}{max(from_seq - 1, 0):0{SEQ_DIGITS}d}/~"
            keys = self.store.list_keys(self.bucket, CHECKPOINT_PREFIX, start_after=start_after)
        found = (parse_checkpoint_key(key) for key in keys)
        return sorted(c for c in found if c is not None and c.seq >= from_seq and (to_seq is None or c.seq <= to_seq))


class InMemoryAuditAnchor(AuditAnchor):
    """Keeps every checkpoint ever written, like the locked bucket."""

    def __init__(self) -> None:
        self._checkpoints: set[Checkpoint] = set()

    def checkpoint(self, seq: int, hash: str, at: str) -> None:
        self._checkpoints.add(Checkpoint(seq, hash, at))

    def checkpoints(self, from_seq: int = 1, to_seq: int | None = None) -> list[Checkpoint]:
        return sorted(c for c in self._checkpoints if c.seq >= from_seq and (to_seq is None or c.seq <= to_seq))
