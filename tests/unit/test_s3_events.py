"""Every S3-triggered function reads the objects of its event the same way."""

from __future__ import annotations

from aws_lambda_powertools.utilities.parser.models import S3Model

from loopml_core.s3_events import uploaded_objects


def record(key: str, version_id: str | None) -> dict:
    obj = {"key": key, "size": 1, "eTag": "e", "sequencer": "0"}
    if version_id:
        obj["versionId"] = version_id
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2026-11-24T10:00:00.000Z",
        "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "p"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {"x-amz-request-id": "r", "x-amz-id-2": "i"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "c",
            "bucket": {"name": "data", "ownerIdentity": {"principalId": "p"}, "arn": "arn:aws:s3:::data"},
            "object": obj,
        },
    }


def test_keys_are_url_decoded_as_s3_encodes_them():
    event = S3Model.model_validate(
        {"Records": [record("incoming/churn/march+2026%3A+final.csv", "v1"), record("labels/churn/a.csv", None)]}
    )
    assert [(u.bucket, u.key, u.version_id) for u in uploaded_objects(event)] == [
        ("data", "incoming/churn/march 2026: final.csv", "v1"),
        ("data", "labels/churn/a.csv", None),
    ]
