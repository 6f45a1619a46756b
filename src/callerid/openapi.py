"""The OpenAPI document's common parts, and the pieces routes describe their operations with.

FastAPI builds the document from the routes (and ``callerid.fastlane.add_to_openapi`` adds the fast routes); each
route documents what is its own: path and query parameters, request body schema and example, success answers and
the errors only it gives. ``finish`` then does, once, what every operation of a family shares, as the code paths
give it:

- **business** endpoints (``/clients/...``, ``/v2/clients/...`` but T): the bearer-token check
  (``accounts.dependencies.check_access``) answers 401 (no header; unknown, expired or revoked token), 403 (another
  account's token; no access), 429 (with ``Retry-After``) and a 500 only for an unparsable ``Authorization`` header
  (SPEC §3.4 #2, kept from the reference service); their parameters and bodies answer 400;
- **T** (``POST /clients/{clientAccountId}/token``): 400, 401 and its own 429;
- **app** endpoints (``/app/v1/...``): a device token (``delivery.auth``) answers 401; the registration endpoints
  (devices, verify, resend) take none and document their own answers (``delivery.routes``, ``verification``);
- ``/metrics``: the metrics token; the public endpoints (health, readiness, keys, logos, downloads): none.

And for every operation: 405 with ``Allow`` (another method on its path), 404 when it has path parameters (a value
holding ``/`` makes a path that matches no endpoint), 400 and 413 (``callerid.request_limits``) when it takes a
body. FastAPI's 422 is removed everywhere: validation failures answer 400 (``callerid.errors``). Every error
answer gets its JSON schema from the shapes of SPEC §2.4 (components below) unless its route gave one, the
``{clientAccountId}`` parameter is declared once for every operation that has it, and each operation gets its
``security``. Nothing here refers to a component it does not also define (ReDoc refuses dangling ``$ref``s).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Sequence
from typing import Any

from callerid.paging import MAX_PAGE

# What ``callerid.responses.JsonResponse`` answers with (SPEC §2.2), written out so that the wire schemas that use
# these pieces stay free of the web framework (tests/test_layers.py checks that the two agree).
JSON = "application/json; charset=utf-8"
REQUEST_JSON = "application/json"
SCHEMA_REF = "#/components/schemas/"

# --- pieces for the routes -------------------------------------------------------------------------------------

UUID = {"type": "string", "format": "uuid"}
# SPEC §2.5: an optional leading "+", then 10-15 digits without a leading 0 (whitespace around it is trimmed).
PHONE_PATTERN = r"^\+?[1-9][0-9]{9,14}$"
PHONE_DESCRIPTION = "10-15 digits, country code first, no leading 0; a leading `+` is accepted and dropped"
MAX_LIMIT = 1000  # parse_page's max_limit (SPEC §2.7)


def ref(name: str) -> dict[str, str]:
    return {"$ref": SCHEMA_REF + name}


def phone(description: str = PHONE_DESCRIPTION, example: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "pattern": PHONE_PATTERN, "description": description}
    if example is not None:
        schema["examples"] = [example]
    return schema


def path_parameter(
    name: str, description: str, schema: dict[str, Any] | None = None, example: str | None = None
) -> dict[str, Any]:
    """A path parameter; a UUID unless ``schema`` says otherwise."""
    parameter: dict[str, Any] = {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": dict(schema if schema is not None else UUID),
    }
    if example is not None:
        parameter["example"] = example
    return parameter


def query_parameter(
    name: str,
    description: str,
    schema: dict[str, Any] | None = None,
    *,
    required: bool = False,
    empty_is_absent: bool = False,
    example: Any = None,
) -> dict[str, Any]:
    """A query parameter (a string unless ``schema`` says otherwise). ``empty_is_absent``: the server reads
    ``name=`` like a missing parameter (``allowEmptyValue``)."""
    parameter: dict[str, Any] = {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": dict(schema if schema is not None else {"type": "string"}),
    }
    if empty_is_absent:
        parameter["allowEmptyValue"] = True
    if example is not None:
        parameter["example"] = example
    return parameter


def header_parameter(name: str, description: str, schema: dict[str, Any], *, required: bool) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": required, "description": description, "schema": dict(schema)}


def page_parameters(default_limit: int) -> list[dict[str, Any]]:
    """``page`` and ``limit`` as ``callerid.http.parse_page`` reads them (SPEC §2.7)."""
    return [
        query_parameter(
            "page",
            "page number, from 1 (default 1); past the last page the list is empty",
            {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 1},
            empty_is_absent=True,
        ),
        query_parameter(
            "limit",
            f"items per page, 1-{MAX_LIMIT} (default {default_limit})",
            {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": default_limit},
            empty_is_absent=True,
        ),
    ]


def json_body(schema: dict[str, Any], example: Any) -> dict[str, Any]:
    """A required JSON request body (``requestBody``)."""
    return {"required": True, "content": {REQUEST_JSON: {"schema": schema, "example": example}}}


def json_response(description: str, schema: dict[str, Any] | None = None, example: Any = None) -> dict[str, Any]:
    """A response object with a JSON body in the API's response media type."""
    entry: dict[str, Any] = {}
    if schema is not None:
        entry["schema"] = schema
    if example is not None:
        entry["example"] = example
    return {"description": description, "content": {JSON: entry}}


def error_schema(slug: str | None = None) -> dict[str, Any]:
    """``{"slug", "message"}``, with ``slug`` fixed when given."""
    if slug is None:
        return ref("Error")
    return {"allOf": [ref("Error"), {"type": "object", "properties": {"slug": {"const": slug}}}]}


# --- the shared components ---------------------------------------------------------------------------------------

_TEXT = {"type": "string"}
COMPONENT_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "description": "The common error shape (SPEC §2.4): every auth failure and most other errors.",
        "required": ["slug", "message"],
        "properties": {"slug": _TEXT, "message": _TEXT},
        "additionalProperties": False,
    },
    "StatusInfoError": {
        "type": "object",
        "description": "R2/B2 errors: `field` names the failing field (absent when the body is not a JSON object).",
        "required": ["status_info"],
        "properties": {
            "status_info": {
                "type": "object",
                "required": ["status", "message"],
                "properties": {"status": {"const": "error"}, "field": _TEXT, "message": _TEXT},
                "additionalProperties": False,
            }
        },
        "additionalProperties": False,
    },
    "V1Outcome": {
        "type": "object",
        "description": "R1/B1 answers: `success`, or `failure` with the first error (and the BatchID once stored).",
        "required": ["status", "message"],
        "properties": {"status": {"enum": ["success", "failure"]}, "message": _TEXT},
        "additionalProperties": False,
    },
    "Message": {
        "type": "object",
        "description": 'CMB/UF "nothing found" answers.',
        "required": ["message"],
        "properties": {"message": _TEXT},
        "additionalProperties": False,
    },
}

SECURITY_SCHEMES: dict[str, Any] = {
    "AccessToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "business endpoints: the `token` of `POST /clients/{clientAccountId}/token` (64 letters and "
        "digits, valid 60 minutes)",
    },
    "DeviceToken": {"type": "http", "scheme": "bearer", "description": "`device_token` from POST /app/v1/devices"},
    "DeviceTokenQuery": {
        "type": "apiKey",
        "in": "query",
        "name": "token",
        "description": "the `device_token` as `?token=`, for browsers (whose WebSockets cannot send headers); "
        "the `Authorization` header wins when both are sent",
    },
    "AppCredential": {
        "type": "http",
        "scheme": "bearer",
        "description": "`CALLERID_DEVICE_VERIFIER=trusted_backend` only: the app vendor's server registers phones "
        "with a credential the operator issued (`callerid app-credentials create`)",
    },
    "MetricsToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "`/metrics`: the operator's `CALLERID_METRICS_TOKEN`",
    },
}

CLIENT_ACCOUNT_ID = path_parameter(
    "clientAccountId", "the account's id, shown on the console's Manage API Keys page (any case)"
)
RETRY_AFTER = {
    "description": "seconds to wait before trying again",
    "required": True,
    "schema": {"type": "integer", "minimum": 1},
}
ALLOW = {
    "description": "the methods served on this path",
    "required": True,
    "schema": {"type": "string"},
}
TOKEN_PARSE_ERROR = {"slug": "internal-server-error", "message": "500/50011 - Failed to parse token"}

# The slug each error status has wherever this module fills in a schema (a route with another shape gives its own).
_SLUGS = {
    400: "invalid-input",
    401: "authorization-error",
    403: "forbidden-error",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    410: "registration-ended",
    413: "request-entity-too-large",
    426: "upgrade-required",
    429: "rate-limit-exceeded",
}

BUSINESS = "business"
TOKEN = "token"
APP = "app"
REGISTRATION = "registration"
METRICS = "metrics"
PUBLIC = "public"

TOKEN_PATH = "/clients/{clientAccountId}/token"
REGISTRATION_PATHS = frozenset({"/app/v1/devices", "/app/v1/devices/verify", "/app/v1/devices/resend"})

_SECURITY: dict[str, list[dict[str, list[str]]]] = {
    BUSINESS: [{"AccessToken": []}],
    TOKEN: [],
    APP: [{"DeviceToken": []}, {"DeviceTokenQuery": []}],
    METRICS: [{"MetricsToken": []}],
    PUBLIC: [],
}
# Registration takes no device token; on a trusted_backend server the app credential (the others ignore it).
_REGISTRATION_SECURITY = {"/app/v1/devices": [{}, {"AppCredential": []}]}


def family(path: str) -> str:
    """Which family an operation on ``path`` belongs to (see the module docstring)."""
    if path == TOKEN_PATH:
        return TOKEN
    if path.startswith(("/clients/", "/v2/clients/")):
        return BUSINESS
    if path in REGISTRATION_PATHS:
        return REGISTRATION
    if path.startswith("/app/"):
        return APP
    if path == "/metrics":
        return METRICS
    return PUBLIC


def _common_answers(fam: str, has_body: bool, has_path_parameters: bool) -> dict[int, dict[str, Any]]:
    """The error answers every operation of ``fam`` shares (schemas are filled in by ``_complete``)."""
    answers: dict[int, dict[str, Any]] = {}
    if fam in (BUSINESS, TOKEN) or has_body:
        answers[400] = _example(
            "invalid-input: a parameter or the body is invalid; the message names it",
            {"slug": "invalid-input", "message": "page is invalid"},
        )
    if fam == BUSINESS:
        answers[401] = _example(
            "authorization-error: no `Authorization` header (`Missing authorization header`), or a token that is "
            "unknown, expired or revoked (`please login again`)",
            {"slug": "authorization-error", "message": "please login again"},
        )
        answers[403] = _example(
            "forbidden-error: a token of another account, or its API key lacks the access level, or the account the "
            "feature",
            {"slug": "forbidden-error", "message": "not authorized. please contact your admin."},
        )
        answers[429] = _example(
            "rate-limit-exceeded: over the token's request limit (SPEC §4); try again after `Retry-After` seconds",
            {"slug": "rate-limit-exceeded", "message": "too many requests"},
        )
        answers[500] = json_response(
            "internal-server-error `500/50011 - Failed to parse token`, and only that: the `Authorization` header "
            "is not `Bearer <64 letters and digits>` (answered so for compatibility with the reference service, "
            "SPEC §3.4 #2)",
            {
                "type": "object",
                "required": ["slug", "message"],
                "properties": {
                    "slug": {"const": TOKEN_PARSE_ERROR["slug"]},
                    "message": {"const": TOKEN_PARSE_ERROR["message"]},
                },
                "additionalProperties": False,
            },
            TOKEN_PARSE_ERROR,
        )
    if fam == APP:
        answers[401] = _example(
            "authorization-error: no device token, or one that is unknown (replaced or unregistered device)",
            {"slug": "authorization-error", "message": "invalid device token"},
        )
    if has_path_parameters:
        answers[404] = _example(
            "not-found: no endpoint has this path (e.g. a path parameter holding `/`)",
            {"slug": "not-found", "message": "not found"},
        )
    answers[405] = _example(
        "method-not-allowed: another method on this path; `Allow` lists the methods served",
        {"slug": "method-not-allowed", "message": "method not allowed"},
    )
    if has_body:
        answers[413] = _example(
            "request-entity-too-large: the body is over `CALLERID_MAX_REQUEST_BODY_BYTES` (1 MiB by default)",
            {"slug": "request-entity-too-large", "message": "request body must be at most 1048576 bytes"},
        )
    return answers


def _example(description: str, example: dict[str, str]) -> dict[str, Any]:
    return json_response(description, example=example)


# --- finishing ---------------------------------------------------------------------------------------------------

_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Every (path, method, operation object) of ``document``."""
    for path, item in document.get("paths", {}).items():
        for method in _METHODS:
            if method in item:
                yield path, method, item[method]


def finish(document: dict[str, Any]) -> dict[str, Any]:
    """Complete ``document`` (built by FastAPI, fast routes added) in place; see the module docstring."""
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.update(copy.deepcopy(COMPONENT_SCHEMAS))
    components.setdefault("securitySchemes", {}).update(copy.deepcopy(SECURITY_SCHEMES))
    for path, method, op in operations(document):
        fam = family(path)
        _declare_client_account(path, op)
        responses = op.setdefault("responses", {})
        responses.pop("422", None)
        if method == "post" and path in IDEMPOTENT_POSTS:
            _declare_idempotency(op, responses)
        has_path_parameters = "{" in path
        common = _common_answers(fam, "requestBody" in op, has_path_parameters)
        for status, answer in common.items():
            # The route's own description wins (it knows its cases); the shared answer fills in the rest.
            own = responses.get(str(status))
            responses[str(status)] = _merge(answer, own) if own is not None else answer
        for status, answer in responses.items():
            _normalise_media_types(answer)
            if status.isdigit() and int(status) >= 400:
                _complete(int(status), answer)
        op["responses"] = dict(sorted(responses.items()))
        op["security"] = copy.deepcopy(_REGISTRATION_SECURITY.get(path, _SECURITY.get(fam, [])))
    _drop_unused_schemas(document, ("HTTPValidationError", "ValidationError"))
    return document


# The POSTs that take an Idempotency-Key (callerid.idempotency; an extension, token minting excepted).
IDEMPOTENT_POSTS = frozenset(
    (
        "/v2/clients/{clientAccountId}/dynamic_call_record",
        "/v2/clients/{clientAccountId}/dynamic_call_records",
        "/clients/{clientAccountId}/dynamic_call_record",
        "/clients/{clientAccountId}/dynamic_call_records",
        "/clients/{clientAccountId}/number_management/feature_sets/{featureSetId}/numbers/publish",
        "/clients/{clientAccountId}/number_management/feature_sets/{featureSetId}/numbers/delist",
    )
)
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": (
        "Extension (reference clients need not send it): a key of 1-255 printable ASCII characters chosen by the "
        "client, the same on every retry of one request. Within `idempotency_key_hours` (24 by default) the same "
        "key with the same method, path and body answers the first answer again, with `Idempotent-Replayed: true`, "
        "and does nothing twice, also when retries race; with another request it is refused (422). Keys are per "
        "account."
    ),
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}


def _declare_idempotency(op: dict[str, Any], responses: dict[str, Any]) -> None:
    op["parameters"] = [*op.get("parameters", []), copy.deepcopy(IDEMPOTENCY_KEY)]
    responses["409"] = {
        "description": "idempotency-key-in-progress: a request with this Idempotency-Key is still being processed; "
        "retry after `Retry-After` seconds",
        "headers": {"Retry-After": copy.deepcopy(RETRY_AFTER)},
        "content": {JSON: {"schema": error_schema("idempotency-key-in-progress")}},
    }
    responses["422"] = {
        "description": "idempotency-key-reused: this Idempotency-Key was used with another request",
        "content": {JSON: {"schema": error_schema("idempotency-key-reused")}},
    }


def _declare_client_account(path: str, op: dict[str, Any]) -> None:
    """Every operation under ``{clientAccountId}`` declares it once, the same way."""
    if "{clientAccountId}" not in path:
        return
    others = [p for p in op.get("parameters", []) if not (p.get("in") == "path" and p.get("name") == "clientAccountId")]
    op["parameters"] = [copy.deepcopy(CLIENT_ACCOUNT_ID), *others]


def _merge(shared: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(own)
    if not merged.get("description"):
        merged["description"] = shared["description"]
    if "content" not in merged:
        merged["content"] = copy.deepcopy(shared["content"])
    return merged


def _normalise_media_types(answer: dict[str, Any]) -> None:
    """One JSON media type per answer, the one the server sends (FastAPI may add a bare ``application/json`` beside
    it when a route gives an example)."""
    content = answer.get("content")
    if not content or REQUEST_JSON not in content:
        return
    bare = content.pop(REQUEST_JSON)
    ours = content.setdefault(JSON, {})
    for key, value in bare.items():
        if key not in ours or ours[key] in ({}, None):
            ours[key] = value
    # Keep the JSON media type first, as FastAPI does.
    answer["content"] = {JSON: content.pop(JSON), **content}


def _complete(status: int, answer: dict[str, Any]) -> None:
    """An error answer without a schema gets the common shape (its slug fixed when the status has one), and the
    headers the server always sends with it."""
    media = answer.setdefault("content", {}).setdefault(JSON, {})
    if not media.get("schema"):
        media["schema"] = error_schema(_SLUGS.get(status))
    if status == 429:
        answer.setdefault("headers", {})["Retry-After"] = copy.deepcopy(RETRY_AFTER)
    if status == 405:
        answer.setdefault("headers", {})["Allow"] = copy.deepcopy(ALLOW)


def _drop_unused_schemas(document: dict[str, Any], names: Sequence[str]) -> None:
    """Drop ``names`` from the component schemas unless something still refers to them; in order, so that a schema
    only an earlier dropped one referred to (ValidationError under HTTPValidationError) goes too."""
    schemas = document.get("components", {}).get("schemas", {})
    for name in names:
        if name in schemas and not _refers_to(document, SCHEMA_REF + name, skip=schemas[name]):
            del schemas[name]


def _refers_to(value: Any, target: str, skip: Any) -> bool:
    if value is skip:
        return False
    if isinstance(value, dict):
        return value.get("$ref") == target or any(_refers_to(item, target, skip) for item in value.values())
    if isinstance(value, list):
        return any(_refers_to(item, target, skip) for item in value)
    return False


def refs(value: Any) -> Iterator[str]:
    """Every ``$ref`` in ``value`` (for tests and for finding dangling ones)."""
    if isinstance(value, dict):
        if isinstance(value.get("$ref"), str):
            yield value["$ref"]
        for item in value.values():
            yield from refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from refs(item)


def path_parameter_names(path: str) -> list[str]:
    return re.findall(r"\{(\w+)\}", path)
