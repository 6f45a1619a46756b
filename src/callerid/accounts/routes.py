"""HTTP for the accounts domain: minting access tokens (SPEC §3.3)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from callerid import openapi
from callerid.accounts import service
from callerid.failures import InvalidInput, Unauthorized
from callerid.http import parse_uuid, read_json_object
from callerid.responses import JsonResponse
from callerid.runtime import runtime_of
from callerid.timefmt import iso_z

router = APIRouter(tags=["Authentication"])


def _required_string(body: dict[str, object] | None, name: str) -> str:
    value = None if body is None else body.get(name)
    if not isinstance(value, str) or value.strip() == "":
        raise InvalidInput(f"{name} is required")
    return value.strip()


@router.post(
    "/clients/{clientAccountId}/token",
    summary="Generate an access token",
    description=(
        "Exchange an API key pair for a bearer token valid 60 minutes. Requires the header "
        "`X-Public-Access: allow`. At most 10 tokens per account per 30 minutes."
    ),
    openapi_extra={
        "parameters": [
            openapi.header_parameter(
                "X-Public-Access", "must be `allow` (any case)", {"type": "string", "enum": ["allow"]}, required=True
            )
        ],
        "requestBody": openapi.json_body(
            {
                "type": "object",
                "required": ["api_key", "key_id"],
                "properties": {
                    "api_key": {
                        "type": "string",
                        "pattern": r"\S",
                        "description": "the key's secret, shown once at creation (not blank)",
                    },
                    "key_id": {**openapi.UUID, "description": "the key's id"},
                },
            },
            # Placeholders: the pair of one of your API keys (console, Manage API Keys).
            {"key_id": "aaaee1b1-7a2f-4c0b-8271-4e2b41c1bf01", "api_key": "caf1694e-b8a4-4082-82fc-105a0a63eafe"},
        ),
    },
    responses={
        200: openapi.json_response(
            "token minted",
            {
                "type": "object",
                "required": ["token", "created_at"],
                "properties": {
                    "token": {"type": "string", "pattern": "^[A-Za-z0-9]{64}$"},
                    "created_at": {"type": "string", "format": "date-time"},
                },
                "additionalProperties": False,
            },
            {
                "token": "a4p0pZ2x3aEk9TYGxPZldm0qvWQknTXTINPZxNpIZ32yWmiOFtGqv2mEU7nJlQO6",
                "created_at": "2025-07-10T06:59:05.72Z",
            },
        ),
        400: {
            "description": "invalid-input: `clientAccountId is invalid`, `api_key is required`, `key_id is required`"
        },
        401: {
            "description": "authorization-error: `X-Public-Access` missing or not `allow` (`Missing authorization "
            "header`), or `invalid credentials`"
        },
        429: {"description": "rate-limit-exceeded: 10 tokens were minted for the account in the last 30 minutes"},
    },
)
async def create_token(clientAccountId: str, request: Request) -> JsonResponse:
    if request.headers.get("x-public-access", "").strip().lower() != "allow":
        raise Unauthorized("Missing authorization header")
    account_id = parse_uuid(clientAccountId)
    if account_id is None:
        raise InvalidInput("clientAccountId is invalid")
    body = await read_json_object(request)
    api_key = _required_string(body, "api_key")
    key_id = parse_uuid(_required_string(body, "key_id"))
    if key_id is None:
        raise Unauthorized("invalid credentials")
    runtime = runtime_of(request)
    async with runtime.db.transaction() as session:
        minted = await service.mint_token(
            session, runtime.settings, account_id=account_id, key_id=key_id, secret=api_key
        )
    if minted is None:
        raise Unauthorized("invalid credentials")
    return JsonResponse({"token": minted.token, "created_at": iso_z(minted.created_at)})
