"""What the route decorators say about their responses, for the OpenAPI document of the whole API:
the success envelope ``{"data": <shape>}`` (shapes are TypedDicts of ``llm_platform.api.views``) and the
route's own error codes. ``openapi_doc/document.py`` (dev tooling) builds the document from the handlers
(``bin/generate-openapi``); this module stays in the layer because the handlers import it, so it
imports nothing beyond the standard library.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # Powertools' types of ``responses=``, for the type checker only (nothing imported at run time)
    from aws_lambda_powertools.event_handler.openapi.types import (
        OpenAPIResponse,
        OpenAPIResponseContentModel,
        OpenAPIResponseContentSchema,
    )

JSON = "application/json"
SCHEMA_REF = "#/components/schemas/"

# --------------------------------------------------------------------------- for the route decorators


def error_content() -> dict[str, OpenAPIResponseContentSchema | OpenAPIResponseContentModel]:
    return {JSON: {"schema": {"$ref": SCHEMA_REF + "ErrorResponse"}}}


def _shape_schema(shape: str | tuple[str, ...], many: bool) -> dict[str, Any]:
    names = (shape,) if isinstance(shape, str) else shape
    refs = [{"$ref": SCHEMA_REF + name} for name in names]
    item = refs[0] if len(refs) == 1 else {"anyOf": refs}
    return {"type": "array", "items": item} if many else item


def success(
    description: str, shape: str | tuple[str, ...], *, many: bool = False, paged: bool = False
) -> OpenAPIResponse:
    """A success response ``{"data": <shape>}``; ``shape`` names TypedDicts of ``llm_platform.api.views``
    (several: any of them), ``many``: a list of it, ``paged``: a list with ``nextCursor`` beside it."""
    properties: dict[str, Any] = {"data": _shape_schema(shape, many or paged)}
    if paged:
        properties["nextCursor"] = {
            "type": ["string", "null"],
            "description": "Pass as `cursor` for the next page; null on the last page.",
        }
    envelope = {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }
    return {"description": description, "content": {JSON: {"schema": envelope}}}


def responses(
    status: int,
    shape: str | tuple[str, ...],
    description: str,
    *,
    many: bool = False,
    paged: bool = False,
    errors: Mapping[int, str] | None = None,
    more: Mapping[int, OpenAPIResponse] | None = None,
    headers: Mapping[str, str] | None = None,
) -> dict[int, OpenAPIResponse]:
    """``responses=`` of a management route: its success (with ``headers``: name -> what it says) and its
    own errors (status -> the codes and when, in Markdown). The errors every route shares are added when
    the document is built."""
    documented: dict[int, OpenAPIResponse] = {status: success(description, shape, many=many, paged=paged)}
    if headers:
        documented[status]["headers"] = {
            name: {"description": text, "schema": {"type": "string"}} for name, text in headers.items()
        }
    documented.update(more or {})
    for code, text in (errors or {}).items():
        documented[code] = {"description": text, "content": error_content()}
    return documented
