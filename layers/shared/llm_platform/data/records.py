"""Entity ↔ DynamoDB record mapping: snake_case fields become camelCase attributes."""

from __future__ import annotations

from dataclasses import fields
from enum import Enum
from typing import TYPE_CHECKING, Any, TypeVar

from llm_platform.data.dynamo import from_item, to_item

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def to_record_item(entity: Any, **extra: Any) -> dict[str, Any]:
    record = {camel(f.name): getattr(entity, f.name) for f in fields(entity)}
    record.update(extra)
    return to_item({k: (v.value if isinstance(v, Enum) else v) for k, v in record.items()})


def from_record(cls: type[T], record: dict[str, Any]) -> T:
    return cls(**{f.name: record[camel(f.name)] for f in fields(cls) if camel(f.name) in record})


def from_record_item(cls: type[T], item: dict[str, Any] | None) -> T | None:
    record = from_item(item)
    return None if record is None else from_record(cls, record)
