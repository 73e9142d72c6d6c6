"""The audit bucket: checkpoints of the audit chain under Object Lock, written only by the functions that write the
registry, under the checkpoint prefix, and deleted by no one."""

from __future__ import annotations

import pytest
from cfn_template import NAMES, Template, arn, flatten

from infra.declaration import AUDIT_LOCK, FUNCTIONS, Access, ObjectLockMode

pytestmark = pytest.mark.xdist_group("cdk")

AUDIT_BUCKET_ARN = arn("s3", NAMES.audit_bucket, regional=False)
CHECKPOINTS = f"{AUDIT_BUCKET_ARN}/audit/checkpoints/*"


def _audit_bucket(template: Template) -> str:
    return template.one("AWS::S3::Bucket", BucketName=NAMES.audit_bucket)


def _role_statements(template: Template, key: str) -> list[dict]:
    function = template.one("AWS::Lambda::Function", FunctionName=FUNCTIONS[key].physical_name())
    role = template.props(function)["Role"]["Fn::GetAtt"][0]
    return [
        statement
        for policy in template.of_type("AWS::IAM::Policy").values()
        if {"Ref": role} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def _audit_bucket_permissions(template: Template, key: str) -> set[tuple[str, str]]:
    found = set()
    for statement in _role_statements(template, key):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        for resource in map(flatten, resources):
            if resource.startswith(AUDIT_BUCKET_ARN):
                found |= {(action, resource) for action in actions}
    return found


def test_audit_bucket_locks_every_version_for_the_declared_retention(template: Template) -> None:
    props = template.props(_audit_bucket(template))
    assert props["ObjectLockEnabled"] is True
    assert props["ObjectLockConfiguration"] == {
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": AUDIT_LOCK.mode.value, "Days": AUDIT_LOCK.retention_days}},
    }
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert "DestinationBucketName" in props["LoggingConfiguration"]
    assert "LifecycleConfiguration" not in props  # nothing expires a checkpoint, nor hides it behind a delete marker


def test_the_declared_lock_is_governance_for_seven_years() -> None:
    # A deliberate choice (infra/declaration.py, docs/governance.md): changing it must change this test too.
    assert AUDIT_LOCK.mode is ObjectLockMode.GOVERNANCE
    assert AUDIT_LOCK.retention_days == 7 * 365


def test_audit_bucket_policy_denies_every_principal_deletes_and_lifecycle_rules(template: Template) -> None:
    bucket = _audit_bucket(template)
    (policy,) = [
        p["Properties"]
        for p in template.of_type("AWS::S3::BucketPolicy").values()
        if flatten(p["Properties"]["Bucket"]) == "${" + bucket + "}"
    ]
    denials = {
        (action, flatten(statement["Resource"]))
        for statement in policy["PolicyDocument"]["Statement"]
        if statement["Effect"] == "Deny" and statement["Principal"] == {"AWS": "*"} and "Condition" not in statement
        for action in (statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]])
    }
    bucket_arn = "${" + bucket + ".Arn}"
    assert denials == {
        ("s3:DeleteObject", f"{bucket_arn}/*"),
        ("s3:DeleteObjectVersion", f"{bucket_arn}/*"),
        ("s3:PutLifecycleConfiguration", bucket_arn),
    }


def test_exactly_the_functions_that_write_the_registry_may_write_checkpoints(template: Template) -> None:
    writers = {
        key for key, spec in FUNCTIONS.items() if spec.grants.registry_table in (Access.WRITE, Access.READ_WRITE)
    }
    granted = {key for key, spec in FUNCTIONS.items() if spec.grants.audit_checkpoints}
    assert writers == granted
    assert {"validate_upload", "register_model", "record_failure", "upload_failed", "drift_check"} <= writers
    for key in FUNCTIONS:
        expected = {("s3:PutObject", CHECKPOINTS)} if key in writers else set()
        assert _audit_bucket_permissions(template, key) == expected, key


def test_predict_has_no_audit_bucket_access_nor_its_name(template: Template) -> None:
    assert _audit_bucket_permissions(template, "predict") == set()
    function = template.one("AWS::Lambda::Function", FunctionName=FUNCTIONS["predict"].physical_name())
    assert "AUDIT_BUCKET" not in template.props(function)["Environment"]["Variables"]


def test_checkpoint_writers_are_told_the_audit_bucket(template: Template) -> None:
    for key, spec in FUNCTIONS.items():
        function = template.one("AWS::Lambda::Function", FunctionName=spec.physical_name())
        variables = template.props(function)["Environment"]["Variables"]
        assert ("AUDIT_BUCKET" in variables) == spec.grants.audit_checkpoints, key
