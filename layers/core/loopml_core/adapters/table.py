"""A key-value table (DynamoDB) with the one write LoopML needs: an all-or-nothing conditional transaction.

Items are flat dicts of strings and integers keyed by `pk` and `sk`; richer payloads are stored as JSON text by the
registry, so no float/Decimal conversion leaks into the logic. A transaction puts items, deletes items and checks
items it does not write (DynamoDB's Put, Delete and ConditionCheck), each under its own condition.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from loopml_core.errors import ConflictError

Item = dict[str, str | int]
MAX_TRANSACTION_ITEMS = 100  # DynamoDB's TransactWriteItems limit


@dataclass(frozen=True)
class Put:
    """Write `item` whole. `if_absent` requires no item at that key; `if_equals` requires these attribute values."""

    item: Item
    if_absent: bool = False
    if_equals: dict[str, str | int] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return str(self.item["pk"]), str(self.item["sk"])


@dataclass(frozen=True)
class Delete:
    """Remove the item at (pk, sk); with `if_equals`, only if it exists with these attribute values."""

    pk: str
    sk: str
    if_equals: dict[str, str | int] = field(default_factory=dict)
    if_absent: ClassVar[bool] = False  # conditions on attribute values only

    @property
    def key(self) -> tuple[str, str]:
        return self.pk, self.sk


@dataclass(frozen=True)
class Check:
    """Write nothing, but cancel the transaction unless the item at (pk, sk) exists with these attribute values:
    a change that depends on an item it does not write (e.g. a deployment on the champion it was validated against)."""

    pk: str
    sk: str
    if_equals: dict[str, str | int]
    if_absent: ClassVar[bool] = False  # conditions on attribute values only

    def __post_init__(self) -> None:
        if not self.if_equals:
            raise ValueError("a check needs a condition")

    @property
    def key(self) -> tuple[str, str]:
        return self.pk, self.sk


Write = Put | Delete | Check


class Table(ABC):
    """The DynamoDB operations the registry needs."""

    @abstractmethod
    def get(self, pk: str, sk: str) -> Item | None:
        """The item at (pk, sk), strongly consistent, or None."""

    @abstractmethod
    def query(
        self,
        pk: str,
        sk_prefix: str = "",
        *,
        newest_first: bool = False,
        limit: int | None = None,
        sk_from: str | None = None,
    ) -> list[Item]:
        """Items under `pk` whose sort key starts with `sk_prefix`, or (never both) is at least `sk_from`, in
        sort-key order."""

    @abstractmethod
    def transact(self, puts: Sequence[Write]) -> None:
        """Apply every write (at most MAX_TRANSACTION_ITEMS, each item at most once) or none. Raises ConflictError
        when any condition fails."""

    @abstractmethod
    def delete(self, pk: str, sk: str) -> None:
        """Remove the item at (pk, sk), if there is one. For bookkeeping items only (e.g. an alert once sent)."""

    @abstractmethod
    def put_unconditionally(self, item: Item) -> None:
        """Overwrite an item. Reserved for tests and operators tampering on purpose (e.g. audit verify demos)."""


def _one_sort_key_condition(sk_prefix: str, sk_from: str | None) -> None:
    if sk_prefix and sk_from is not None:  # DynamoDB takes one condition on the sort key
        raise ValueError("query by a sort-key prefix or from a sort key, not both")


def _condition(put: Write) -> tuple[str | None, dict[str, str], dict[str, Any]]:
    if put.if_absent:
        return "attribute_not_exists(pk)", {}, {}
    if put.if_equals:
        names = {f"#a{i}": name for i, name in enumerate(put.if_equals)}
        values = {f":v{i}": _to_dynamo(value) for i, value in enumerate(put.if_equals.values())}
        expression = " AND ".join(f"#a{i} = :v{i}" for i in range(len(put.if_equals)))
        return expression, names, values
    return None, {}, {}


def _to_dynamo(value: str | int) -> dict[str, str]:
    if isinstance(value, bool):
        raise TypeError("store booleans as 0/1 or strings")
    if isinstance(value, int):
        return {"N": str(value)}
    return {"S": value}


def _from_dynamo(attributes: dict[str, dict[str, str]]) -> Item:
    item: Item = {}
    for name, typed in attributes.items():
        if "N" in typed:
            item[name] = int(typed["N"])
        elif "S" in typed:
            item[name] = typed["S"]
    return item


class DynamoTable(Table):
    def __init__(self, table_name: str, client: Any | None = None) -> None:
        self.table_name = table_name
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("dynamodb")
        return self._client

    def get(self, pk: str, sk: str) -> Item | None:
        reply = self.client.get_item(
            TableName=self.table_name, Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True
        )
        return _from_dynamo(reply["Item"]) if "Item" in reply else None

    def query(
        self,
        pk: str,
        sk_prefix: str = "",
        *,
        newest_first: bool = False,
        limit: int | None = None,
        sk_from: str | None = None,
    ) -> list[Item]:
        _one_sort_key_condition(sk_prefix, sk_from)
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": pk}},
            "ScanIndexForward": not newest_first,
            "ConsistentRead": True,
        }
        if sk_prefix:  # DynamoDB rejects an empty begins_with operand
            kwargs["KeyConditionExpression"] += " AND begins_with(sk, :prefix)"
            kwargs["ExpressionAttributeValues"][":prefix"] = {"S": sk_prefix}
        if sk_from is not None:
            kwargs["KeyConditionExpression"] += " AND sk >= :from"
            kwargs["ExpressionAttributeValues"][":from"] = {"S": sk_from}
        items: list[Item] = []
        while True:
            if limit is not None:
                kwargs["Limit"] = limit - len(items)
            reply = self.client.query(**kwargs)
            items.extend(_from_dynamo(raw) for raw in reply.get("Items", []))
            if "LastEvaluatedKey" not in reply or (limit is not None and len(items) >= limit):
                return items
            kwargs["ExclusiveStartKey"] = reply["LastEvaluatedKey"]

    def transact(self, puts: Sequence[Write]) -> None:
        requests = []
        for put in puts:
            request: dict[str, Any] = {"TableName": self.table_name}
            if isinstance(put, Put):
                request["Item"] = {name: _to_dynamo(value) for name, value in put.item.items()}
            else:
                request["Key"] = {"pk": {"S": put.pk}, "sk": {"S": put.sk}}
            expression, names, values = _condition(put)
            if expression:
                request["ConditionExpression"] = expression
            if names:
                request["ExpressionAttributeNames"] = names
            if values:
                request["ExpressionAttributeValues"] = values
            operation = "Put" if isinstance(put, Put) else "Delete" if isinstance(put, Delete) else "ConditionCheck"
            requests.append({operation: request})
        try:
            self.client.transact_write_items(TransactItems=requests)
        except self.client.exceptions.TransactionCanceledException as error:
            reasons = [r.get("Code", "") for r in error.response.get("CancellationReasons", [])]
            raise ConflictError(f"transaction cancelled: {reasons}") from error

    def delete(self, pk: str, sk: str) -> None:
        self.client.delete_item(TableName=self.table_name, Key={"pk": {"S": pk}, "sk": {"S": sk}})

    def put_unconditionally(self, item: Item) -> None:
        self.client.put_item(TableName=self.table_name, Item={name: _to_dynamo(v) for name, v in item.items()})


class InMemoryTable(Table):
    def __init__(self) -> None:
        self._items: dict[tuple[str, str], Item] = {}

    def get(self, pk: str, sk: str) -> Item | None:
        item = self._items.get((pk, sk))
        return copy.deepcopy(item) if item is not None else None

    def query(
        self,
        pk: str,
        sk_prefix: str = "",
        *,
        newest_first: bool = False,
        limit: int | None = None,
        sk_from: str | None = None,
    ) -> list[Item]:
        _one_sort_key_condition(sk_prefix, sk_from)
        keys = sorted(
            (k for k in self._items if k[0] == pk and k[1].startswith(sk_prefix) and k[1] >= (sk_from or "")),
            reverse=newest_first,
        )
        return [copy.deepcopy(self._items[k]) for k in keys[:limit]]

    def transact(self, puts: Sequence[Write]) -> None:
        if len(puts) > MAX_TRANSACTION_ITEMS:
            raise ValueError(f"a transaction takes at most {MAX_TRANSACTION_ITEMS} writes")  # as DynamoDB's
        if len({p.key for p in puts}) != len(puts):
            raise ValueError("a transaction may write each item only once")  # DynamoDB rejects this too
        for put in puts:
            pk, sk = put.key
            current = self._items.get((pk, sk))
            if put.if_absent and current is not None:
                raise ConflictError(f"transaction cancelled: {pk}/{sk} exists")
            for name, expected in put.if_equals.items():
                if current is None or current.get(name) != expected:
                    raise ConflictError(f"transaction cancelled: {pk}/{sk} {name} changed")
        for put in puts:
            if isinstance(put, Put):
                self._items[put.key] = copy.deepcopy(put.item)
            elif isinstance(put, Delete):
                self._items.pop(put.key, None)

    def delete(self, pk: str, sk: str) -> None:
        self._items.pop((pk, sk), None)

    def put_unconditionally(self, item: Item) -> None:
        self._items[(str(item["pk"]), str(item["sk"]))] = copy.deepcopy(item)
