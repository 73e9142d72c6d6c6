"""Adapters: small interfaces over S3, DynamoDB, Step Functions and SNS, each with an AWS and an in-memory version.

Both versions of each adapter pass the same contract tests (tests/integration/test_adapter_contracts.py).
"""
