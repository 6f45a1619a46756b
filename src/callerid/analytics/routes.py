"""HTTP for the analytics API (issue 13 §4, an extension): an account's daily figures over a range of days, grouped
by day, label, feature set or business number, as JSON or CSV. The key needs the ``analytics`` access level
(``accounts.service.KEY_ONLY_FEATURES``); the sums come from ``analytics.queries`` in two statements.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from callerid import openapi
from callerid.accounts.dependencies import require_access
from callerid.accounts.service import ANALYTICS, TokenPrincipal
from callerid.analytics import queries
from callerid.analytics.models import COUNTERS
from callerid.failures import InvalidInput
from callerid.http import parse_uuid
from callerid.phone import normalise_phone
from callerid.responses import JsonResponse
from callerid.runtime import runtime_of

router = APIRouter()

CSV = "text/csv; charset=utf-8"
_FORMATS = ("json", "csv")

_COUNTER_DESCRIPTIONS = {
    "records_delivered": "call records delivered to the receiver's phone",
    "records_not_app_user": "call records whose receiver has no app (SPEC §8)",
    "records_os_not_supported": "call records whose receiver's OS is not supported",
    "records_app_version_not_supported": "call records whose receiver's app is too old",
    "records_failed_to_push": "call records that could not be pushed",
    "shown": "verified identities shown by phones (`displayed` signals)",
    "answered": "calls answered (signals)",
    "missed": "calls missed (signals)",
    "rejected": "calls rejected (signals)",
    "ended": "calls ended (signals)",
    "talk_seconds": "talk time of the ended calls, seconds",
    "blocked": "lookups refused by secure branding (possible spoofed calls)",
    "call_me_back_requests": "Call Me Back requests",
    "survey_responses": "survey responses",
    "ratings": "survey responses that carry a rating",
    "rating_sum": "the sum of those ratings",
    "webhooks_succeeded": "webhook deliveries that succeeded (account-wide: 0 when narrowed by a filter)",
    "webhooks_failed": "webhook deliveries that failed for good (account-wide: 0 when narrowed by a filter)",
}
_DERIVED_SCHEMAS: dict[str, dict[str, Any]] = {
    "records_total": {"type": "integer", "description": "call records of every delivery outcome"},
    "answer_rate": {
        "type": ["number", "null"],
        "description": "answered / (answered + missed + rejected), 4 decimals; null without such calls",
    },
    "average_talk_seconds": {
        "type": ["number", "null"],
        "description": "talkSeconds / ended, 1 decimal; null without ended calls",
    },
    "average_rating": {
        "type": ["number", "null"],
        "description": "ratingSum / ratings, 2 decimals; null without ratings",
    },
    "webhook_p95_ms": {
        "type": ["integer", "null"],
        "description": "95th percentile of webhook delivery delay, as the upper bound of its histogram bucket (ms); "
        "rows of group_by=day and the totals only, unfiltered; null without deliveries",
    },
}


def _figures_schema() -> dict[str, Any]:
    properties: dict[str, Any] = {
        "key": {
            "type": "string",
            "description": 'the group: the day (`2026-12-01`), the label or feature set id, or the number ("+E.164"; '
            '"" for figures of no number); for the totals `from/to`',
        },
        "name": {
            "type": "string",
            "description": "the day, the label's or feature set's name (its id if deleted since), the number; "
            "`(none)` for figures of no label / feature set / number",
        },
    }
    for name in COUNTERS:
        properties[queries.WIRE_NAMES[name]] = {"type": "integer", "description": _COUNTER_DESCRIPTIONS[name]}
    for name, schema in _DERIVED_SCHEMAS.items():
        properties[queries.WIRE_NAMES[name]] = schema
    return {"type": "object", "properties": properties, "required": list(properties)}


_FIGURES = _figures_schema()
_REPORT = {
    "type": "object",
    "properties": {
        "from": {"type": "string", "format": "date"},
        "to": {"type": "string", "format": "date"},
        "groupBy": {"type": "string", "enum": list(queries.GROUPS)},
        "filters": {
            "type": "object",
            "description": "the filters applied, as given (absent ones omitted)",
            "properties": {
                "labelId": openapi.UUID,
                "featureSetId": openapi.UUID,
                "number": {"type": "string", "description": "+E.164"},
            },
        },
        "totals": _FIGURES,
        "rows": {"type": "array", "items": _FIGURES},
    },
    "required": ["from", "to", "groupBy", "filters", "totals", "rows"],
}
_EXAMPLE_FIGURES = {
    "key": "2026-12-01",
    "name": "2026-12-01",
    **{queries.WIRE_NAMES[name]: 0 for name in COUNTERS},
    "recordsDelivered": 120,
    "recordsNotAppUser": 30,
    "shown": 110,
    "answered": 70,
    "missed": 25,
    "rejected": 5,
    "ended": 70,
    "talkSeconds": 8400,
    "recordsTotal": 150,
    "answerRate": 0.7,
    "averageTalkSeconds": 120.0,
    "surveyResponses": 4,
    "ratings": 4,
    "ratingSum": 17,
    "averageRating": 4.25,
    "webhooksSucceeded": 12,
    "webhookP95Ms": 500,
}
_EXAMPLE = {
    "from": "2026-12-01",
    "to": "2026-12-01",
    "groupBy": "day",
    "filters": {},
    "totals": {**_EXAMPLE_FIGURES, "key": "2026-12-01/2026-12-01", "name": "2026-12-01/2026-12-01"},
    "rows": [_EXAMPLE_FIGURES],
}


def _parameters() -> list[dict[str, Any]]:
    day = {"type": "string", "format": "date", "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"}
    return [
        openapi.query_parameter(
            "from", "first day, YYYY-MM-DD, in the account's timezone", day, required=True, example="2026-09-01"
        ),
        openapi.query_parameter(
            "to",
            "last day (inclusive), YYYY-MM-DD, >= from; the range is at most `analytics_max_days` (366) days",
            day,
            required=True,
            example="2026-11-29",
        ),
        openapi.query_parameter(
            "group_by",
            "one row per day (every day of the range, zeros included), label, feature set or business number "
            "(only those with figures, by name); default day",
            {"type": "string", "enum": list(queries.GROUPS), "default": "day"},
            empty_is_absent=True,
        ),
        openapi.query_parameter("label_id", "only the figures of this label", dict(openapi.UUID), empty_is_absent=True),
        openapi.query_parameter(
            "feature_set_id", "only the figures of this feature set", dict(openapi.UUID), empty_is_absent=True
        ),
        openapi.query_parameter(
            "number",
            f"only the figures of this business number: {openapi.PHONE_DESCRIPTION}",
            {"type": "string", "pattern": openapi.PHONE_PATTERN},
            empty_is_absent=True,
        ),
        openapi.query_parameter(
            "format",
            "`csv`: the rows as a CSV file (header row, same names and numbers as the JSON rows; no totals row)",
            {"type": "string", "enum": list(_FORMATS), "default": "json"},
            empty_is_absent=True,
        ),
    ]


def _scope(
    principal: TokenPrincipal, request: Request, max_days: int
) -> tuple[queries.Scope, str, str, dict[str, str]]:
    """The scope, grouping, format and echoed filters of a request; InvalidInput naming the parameter."""
    query = request.query_params
    start, end = queries.parse_range(query.get("from"), query.get("to"), max_days)
    group_by = queries.parse_group(query.get("group_by"))
    output = query.get("format") or "json"
    if output not in _FORMATS:
        raise InvalidInput("format is invalid: json or csv", field="format")
    filters: dict[str, str] = {}
    label_id = feature_set_id = None
    number: int | None = None
    if query.get("label_id"):
        label_id = parse_uuid(query["label_id"])
        if label_id is None:
            raise InvalidInput("label_id is invalid", field="label_id")
        filters["labelId"] = str(label_id)
    if query.get("feature_set_id"):
        feature_set_id = parse_uuid(query["feature_set_id"])
        if feature_set_id is None:
            raise InvalidInput("feature_set_id is invalid", field="feature_set_id")
        filters["featureSetId"] = str(feature_set_id)
    if query.get("number"):
        digits = normalise_phone(query["number"])
        if digits is None:
            raise InvalidInput("number is invalid", field="number")
        number = int(digits)
        filters["number"] = f"+{digits}"
    scope = queries.Scope(
        account_id=principal.account_id,
        start=start,
        end=end,
        label_id=label_id,
        feature_set_id=feature_set_id,
        business_number=number,
    )
    return scope, group_by, output, filters


@router.get(
    "/clients/{clientAccountId}/analytics",
    tags=["Analytics"],
    summary="Figures per day, label, feature set or number (extension)",
    description=(
        "Extension (issue 13): the account's daily figures summed over `from`..`to` (days in the account's "
        "timezone), one row per `group_by` group, with the totals of the range: call records by delivery outcome, "
        "identities shown, calls answered / missed / rejected and the answer rate, average talk time, blocked "
        "attempts (secure branding), Call Me Back requests, survey responses and the average rating, webhook "
        "deliveries and their p95 delay. The figures are counted as the facts are written, so they stay after raw "
        "per-call data is purged; they hold no receiver's number. `label_id`, `feature_set_id` and `number` narrow "
        "them (an id of another account's label simply matches nothing). The API key needs the `analytics` access "
        "level (`read`), which keys have only when it is granted by name (console, `callerid keys create --access "
        "analytics=read`). `format=csv` answers the rows as `text/csv`."
    ),
    openapi_extra={"parameters": _parameters()},
    responses={
        200: {
            "description": "the figures (JSON), or with `format=csv` the rows as CSV",
            "content": {
                openapi.JSON: {"schema": _REPORT, "example": _EXAMPLE},
                CSV: {
                    "schema": {"type": "string"},
                    "example": ",".join(queries.csv_columns("day")) + "\r\n2026-12-01,2026-12-01,...\r\n",
                },
            },
        },
        400: openapi.json_response(
            "invalid-input naming the parameter: `from`/`to` missing or not YYYY-MM-DD, `to` before `from` or the "
            "range too long, `group_by`, `format`, `label_id`, `feature_set_id` or `number` invalid",
            example={"slug": "invalid-input", "message": "from is required"},
        ),
        403: {"description": "another account's token, or a key without the `analytics` access level"},
    },
)
async def analytics(
    request: Request, principal: TokenPrincipal = Depends(require_access(ANALYTICS, "read"))
) -> Response:
    runtime = runtime_of(request)
    scope, group_by, output, filters = _scope(principal, request, runtime.settings.analytics_max_days)
    rows, totals = await queries.report(runtime.db, scope, group_by)
    if output == "csv":
        name = f"analytics-{scope.start.isoformat()}-{scope.end.isoformat()}-{group_by}.csv"
        return Response(
            queries.to_csv(rows, group_by),
            media_type=CSV,
            headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
        )
    return JsonResponse(
        {
            "from": scope.start.isoformat(),
            "to": scope.end.isoformat(),
            "groupBy": group_by,
            "filters": filters,
            "totals": queries.as_json(totals),
            "rows": [queries.as_json(row) for row in rows],
        }
    )
