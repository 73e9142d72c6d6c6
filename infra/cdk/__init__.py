"""The AWS backend: a CDK app generated from `infra.declaration`."""
