"""The CLI's own error, importable without the AWS SDK or the registry, so light commands start fast."""

from __future__ import annotations


class BackendError(Exception):
    """The CLI cannot reach what it was asked to use."""
