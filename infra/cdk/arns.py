"""ARNs of the declared resources, built from their physical names rather than from resource references.

IAM policies built this way depend on no resource, which keeps the template acyclic: the data bucket's native S3
notification depends on the validate function, whose role may read that very bucket. It also lets the functions be
defined before the state machine and topic they are allowed to use.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import ArnFormat, Stack

from infra.declaration import EVENT_BUS, FUNCTIONS, Names


@dataclass(frozen=True)
class Arns:
    stack: Stack
    names: Names

    def bucket(self, bucket_name: str) -> str:
        return self.stack.format_arn(service="s3", region="", account="", resource=bucket_name)

    def objects(self, bucket_name: str) -> str:
        return f"{self.bucket(bucket_name)}/*"

    def registry_table(self) -> str:
        return self.stack.format_arn(service="dynamodb", resource="table", resource_name=self.names.registry_table)

    def state_machine(self) -> str:
        return self.stack.format_arn(
            service="states",
            resource="stateMachine",
            resource_name=self.names.state_machine,
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )

    def executions(self) -> str:
        return self.stack.format_arn(
            service="states",
            resource="execution",
            resource_name=f"{self.names.state_machine}:*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )

    def alert_topic(self) -> str:
        return self.stack.format_arn(service="sns", resource=self.names.alert_topic)

    def event_bus(self) -> str:
        """The account's default EventBridge bus, where registry events go."""
        return self.stack.format_arn(
            service="events", resource="event-bus", resource_name=EVENT_BUS, arn_format=ArnFormat.SLASH_RESOURCE_NAME
        )

    def function(self, key: str) -> str:
        return self.stack.format_arn(
            service="lambda",
            resource="function",
            resource_name=FUNCTIONS[key].physical_name(),
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
