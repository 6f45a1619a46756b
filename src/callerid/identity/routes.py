"""HTTP for the caller-ID lookup (``/app/v1/caller-id``) and the assertion keys (``/.well-known/jwks.json``)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from callerid import clock
from callerid.delivery.auth import INVALID, authenticate, device_token
from callerid.errors import body_of
from callerid.failures import InvalidInput, Unauthorized
from callerid.fastlane import FastRequest, FastResponse, FastRoute, component_schemas, documented, operation
from callerid.identity import service
from callerid.identity.schemas import Jwks, UnverifiedCaller, VerifiedCaller
from callerid.identity.signer import ensure_active_key, jwks
from callerid.openapi import PHONE_DESCRIPTION, PHONE_PATTERN, query_parameter
from callerid.phone import normalise_phone
from callerid.responses import JsonResponse
from callerid.runtime import runtime_of

router = APIRouter(tags=["App: caller ID"])

# Short: a rotated-in key signs within seconds (verifiers should also refetch on an unknown kid).
JWKS_CACHE_CONTROL = "public, max-age=10"


async def caller_id(request: FastRequest) -> FastResponse:
    runtime = request.runtime
    now = clock.now()
    authorization = request.header(b"authorization")
    token = device_token(authorization, request.query("token") if authorization is None else None)
    device = await authenticate(runtime, token, cached=True, now=now)
    raw = request.query("caller")
    if raw is None or raw.strip() == "":
        raise InvalidInput("caller is required")
    caller = normalise_phone(raw.strip())
    if caller is None:
        raise InvalidInput("caller is invalid")
    # Warm the key first (a cold start reads it with its own connection).
    await runtime.signer.active_key(now)
    found = await service.lookup(runtime, caller, device.phone_number, now)
    return FastResponse(found.to_json() if found is not None else service.NOT_VERIFIED)


_CALLER_SCHEMAS = {
    "anyOf": [{"$ref": "#/components/schemas/VerifiedCaller"}, {"$ref": "#/components/schemas/UnverifiedCaller"}]
}

fast_routes = [
    FastRoute(
        ("GET",),
        "/app/v1/caller-id",
        caller_id,
        operation(
            "caller_id",
            summary="Who is calling this phone",
            description=(
                "For an incoming call from `caller` to this phone's own number: the verified identity of the latest "
                "record whose window holds now, with a signed PASSporT `assertion`; else, for a listed business "
                "number, its feature set's static identity (unless the set has secure branding: then only a record "
                'for this phone shows it); otherwise exactly `{"verified": false}`. Authenticate with '
                "`Authorization: Bearer <device_token>`."
            ),
            tags=["App: caller ID"],
            parameters=[
                query_parameter(
                    "caller",
                    f"the calling number: {PHONE_DESCRIPTION}",
                    {"type": "string", "pattern": PHONE_PATTERN},
                    required=True,
                    example="911234567898",
                ),
            ],
            responses={
                200: documented('verified identity, or `{"verified": false}`', schema=_CALLER_SCHEMAS),
                400: documented("invalid-input: caller missing or invalid", body_of(InvalidInput("caller is invalid"))),
                401: documented(
                    "authorization-error: no device token, or one that is unknown", body_of(Unauthorized(INVALID))
                ),
            },
        ),
    )
]
# Component schemas the fast routes refer to (added to the OpenAPI document with them).
openapi_schemas = component_schemas(VerifiedCaller, UnverifiedCaller)


@router.get(
    "/.well-known/jwks.json",
    summary="Keys that verify call assertions",
    description="The EC P-256 public keys (JWK Set) whose `kid` appears in the `assertion` headers; retired keys "
    "stay listed until every assertion they signed has expired.",
    response_model=Jwks,
)
async def jwks_document(request: Request) -> JsonResponse:
    runtime = runtime_of(request)
    async with runtime.db.session() as session:
        document = await jwks(session, runtime.settings)
    if not document["keys"]:
        # First start: make the key now so verifiers never see an empty set.
        async with runtime.db.transaction() as session:
            await ensure_active_key(session)
        async with runtime.db.session() as session:
            document = await jwks(session, runtime.settings)
    return JsonResponse(document, headers={"Cache-Control": JWKS_CACHE_CONTROL})
