"""HTTP for phones' call signals: ``POST /app/v1/call-signals`` (issue 13). The rules are ``analytics.signals``'."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from callerid import openapi
from callerid.analytics import schemas, signals
from callerid.delivery.auth import require_device
from callerid.delivery.service import DeviceInfo
from callerid.failures import InvalidInput
from callerid.http import read_json_object
from callerid.responses import JsonResponse
from callerid.runtime import runtime_of

router = APIRouter(tags=["App: call signals"])


def _inline(schema: Any, definitions: dict[str, Any]) -> Any:
    """``schema`` with pydantic's ``#/$defs/X`` refs replaced by X: in an OpenAPI document they would point at
    nothing (as in ``engagement.routes``)."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(definitions[ref.removeprefix("#/$defs/")], definitions)
        return {key: _inline(value, definitions) for key, value in schema.items() if key != "$defs"}
    if isinstance(schema, list):
        return [_inline(item, definitions) for item in schema]
    return schema


def _body_schema() -> dict[str, Any]:
    full = schemas.CallSignalsBody.model_json_schema()
    schema = _inline(full, full.get("$defs", {}))
    return {"requestBody": openapi.json_body(schema, schema.pop("example"))}


def _answer_examples() -> dict[str, Any]:
    """The 200's examples (its schema is the response model's)."""
    examples = schemas.CallSignalsAnswer.model_json_schema()["examples"]
    answer = openapi.json_response("every event id sent, in exactly one of the lists")
    answer["content"][openapi.JSON]["examples"] = {
        "new": {"summary": "all new", "value": examples[0]},
        "resent": {"summary": "a queue sent again after a lost answer, with one new signal", "value": examples[1]},
    }
    return answer


DESCRIPTION = """
What happened to an incoming call this phone looked up (`GET /app/v1/caller-id`): `displayed` when the verified
identity was shown, then `answered`, `missed` (rang out, or was let ring) or `rejected` (declined), and `ended` with
`durationSeconds` when an answered call ends. One signal, or up to `CALLERID_SIGNAL_MAX_PER_REQUEST` (50) at once
to flush a queue kept while offline.

- **Once per event id**: an `eventId` this phone sent before (or earlier in the same request) is answered in
  `duplicates` and changes nothing, so a phone may resend its queue whenever an answer was lost.
- **Linked** to the identity shown to this phone's number: the newest call record of the pair (caller, this
  phone) whose window holds the call's start (for `ended`: `occurredAt` less `durationSeconds`), else the caller's
  listed number and its feature set. A caller with neither (or whose feature set has secure branding, without a
  record) showed no verified identity: its signal is answered in `ignored` (nothing stored or counted), not
  refused.
- **Validated** all or nothing: a bad signal refuses the request (400 naming the field, e.g.
  `signals[2].occurredAt`) and nothing is stored. `occurredAt` may be at most `CALLERID_SIGNAL_MAX_SKEW_SECONDS`
  (300) ahead of the server's clock and at most `CALLERID_SIGNAL_MAX_AGE_DAYS` (7) old.
- **Limited** per phone to `CALLERID_SIGNAL_RATE_LIMIT` signals (120 a minute): while this phone's window is full
  the request is refused with 429 and `Retry-After` (nothing stored or counted); an accepted request counts all its
  signals.

Accepted signals are counted in the account's daily figures (day of `occurredAt` in the account's timezone):
`displayed` as identities shown, `answered`/`missed`/`rejected` as such, `ended` with its talk time.
"""


@router.post(
    "/app/v1/call-signals",
    summary="Report what happened to a call",
    description=DESCRIPTION,
    openapi_extra=_body_schema(),
    response_model=schemas.CallSignalsAnswer,
    responses={
        200: _answer_examples(),
        400: {
            "description": "invalid-input naming the field; nothing was stored",
            "content": {
                openapi.JSON: {
                    "example": {
                        "slug": "invalid-input",
                        "message": "signals[2].occurredAt is older than 7 days",
                    }
                }
            },
        },
        429: {
            "description": "rate-limit-exceeded: this phone sent too many signals; try again after `Retry-After`",
            "content": {
                openapi.JSON: {
                    "example": {
                        "slug": "rate-limit-exceeded",
                        "message": "too many call signals from this phone: try again in 12 seconds",
                    }
                }
            },
        },
    },
)
async def post_call_signals(request: Request, device: DeviceInfo = Depends(require_device)) -> JsonResponse:
    body = await read_json_object(request)
    if body is None:
        raise InvalidInput("request body must be a JSON object")
    runtime = runtime_of(request)
    parsed = schemas.parse_call_signals(body, runtime.settings.signal_max_per_request)
    answer = await signals.record_signals(runtime, device, parsed)
    return JsonResponse(answer.to_json())
