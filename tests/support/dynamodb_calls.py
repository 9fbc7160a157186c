"""Which DynamoDB operations a piece of code makes: the tests that hold the proxy to its round trips."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def dynamodb_operations() -> Iterator[list[str]]:
    """The names of the DynamoDB operations made meanwhile: through botocore, and around it (the proxy's
    transactions go over ``dynamo_wire``)."""
    from llm_platform.data import dynamo_wire
    from llm_platform.data.dynamo import client

    operations: list[str] = []

    def through_botocore(event_name: str, **_: object) -> None:
        operations.append(event_name.rsplit(".", 1)[-1])

    def on_the_wire(operation: str, _params: dict) -> None:
        operations.append(operation)

    client().meta.events.register("before-call.dynamodb", through_botocore)
    dynamo_wire.call_observers.append(on_the_wire)
    try:
        yield operations
    finally:
        client().meta.events.unregister("before-call.dynamodb", through_botocore)
        dynamo_wire.call_observers.remove(on_the_wire)
