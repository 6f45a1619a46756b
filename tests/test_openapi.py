"""The OpenAPI document is exact: valid, every answer it lists is one the API gives (and none it never gives),
every parameter declared, every example one the server takes. ``tests/test_fuzz_api.py`` holds the running server
to it; this checks the document itself, and sends each documented request example to an app."""

from __future__ import annotations

import copy
import json
import re
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from callerid import clock
from callerid.app import create_app
from callerid.config import Settings
from callerid.db import Database
from callerid.engagement import service as engagement
from callerid.jobs.runner import JobRunner
from callerid.openapi import (
    APP,
    BUSINESS,
    IDEMPOTENT_POSTS,
    JSON,
    METRICS,
    PUBLIC,
    REGISTRATION,
    TOKEN,
    TOKEN_PARSE_ERROR,
    family,
    operations,
    path_parameter_names,
    refs,
)
from tests.conftest import Tenant, create_tenant, mint
from tests.engagement.conftest import make_feature_set, make_org, publish, register_phone
from tests.personalisation.conftest import add_label

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
METRICS_TOKEN = "metrics-token-for-the-examples"
FORMATS = Draft202012Validator.FORMAT_CHECKER

# What each family of operations may answer, from its code paths (see callerid.openapi). The API answers validation
# failures with 400; 409 and 422 only concern the Idempotency-Key of the POSTs that take one (below).
ALLOWED_STATUSES: dict[str, set[int]] = {
    # check_access: 401, 403, 429, 500 (unparsable token only); parameters and bodies: 400; bodies: 413;
    # NL/ND/UF: 404 (and any path holding "/" in a parameter); wrong method: 405
    BUSINESS: {200, 400, 401, 403, 404, 405, 413, 429, 500},
    TOKEN: {200, 400, 401, 404, 405, 413, 429},
    # device token: 401; the stream: 101 (WebSocket) or 426 (plain HTTP); engagement: 404, 409; call signals: 429
    APP: {101, 200, 201, 204, 400, 401, 404, 405, 409, 413, 426, 429},
    # delivery.routes + delivery.verification: 201, 202 (otp), 400, 401 (trusted_backend), 404, 410, 429, 502, 503
    REGISTRATION: {201, 202, 400, 401, 404, 405, 410, 413, 429, 502, 503},
    METRICS: {200, 401, 403, 405},
    # logos: 304 (If-None-Match), 308 (a logo URL of a version that kept logos as files)
    PUBLIC: {200, 304, 308, 404, 405, 503},
}
SECURITY = {
    BUSINESS: [{"AccessToken": []}],
    APP: [{"DeviceToken": []}, {"DeviceTokenQuery": []}],
    METRICS: [{"MetricsToken": []}],
}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return create_app(Settings()).openapi()


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # List jobs due at once (the example's business number must be listed), metrics behind a token on both databases.
    return {"number_job_delay_seconds": 0, "metrics_token": METRICS_TOKEN}


@SQLITE_ONLY
async def test_the_served_document_is_valid_openapi(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    validate(response.json())


def test_the_document_is_the_same_in_every_build() -> None:
    first = json.dumps(create_app(Settings()).openapi())
    second = json.dumps(create_app(Settings()).openapi())
    assert first == second


def test_every_operation_documents_only_what_its_family_answers(document: dict[str, Any]) -> None:
    for path, method, op in operations(document):
        fam = family(path)
        name = f"{method.upper()} {path}"
        statuses = {int(status) for status in op["responses"]}
        idempotent = method == "post" and path in IDEMPOTENT_POSTS
        allowed = ALLOWED_STATUSES[fam] | ({409, 422} if idempotent else set())
        assert statuses <= allowed, (name, statuses - allowed)
        if idempotent:
            assert {409, 422} <= statuses, name
            assert "Idempotency-Key" in [p["name"] for p in op["parameters"] if p["in"] == "header"], name
            assert "Retry-After" in op["responses"]["409"]["headers"], name
        assert 405 in statuses, name
        assert (413 in statuses) == ("requestBody" in op), name
        if "requestBody" in op:
            assert 400 in statuses, name
        assert op["security"] == SECURITY.get(fam, op["security"]), name
        responses = op["responses"]
        if fam == BUSINESS:
            assert {400, 401, 403, 404, 429, 500} <= statuses, name
            error = responses["500"]["content"][JSON]
            assert error["example"] == TOKEN_PARSE_ERROR
            assert error["schema"]["properties"]["message"] == {"const": TOKEN_PARSE_ERROR["message"]}
        for status, answer in responses.items():
            headers = answer.get("headers", {})
            if status == "429":
                assert headers["Retry-After"]["required"] is True, name
            if status == "405":
                assert headers["Allow"]["required"] is True, name
            if int(status) >= 400:
                assert answer["content"][JSON]["schema"], (name, status)
            for media, entry in answer.get("content", {}).items():
                if "json" in media:  # every JSON answer says what it holds, in the media type the API sends
                    assert media == JSON and entry.get("schema"), (name, status, media)


def test_every_path_parameter_is_declared(document: dict[str, Any]) -> None:
    for path, method, op in operations(document):
        declared = [p["name"] for p in op.get("parameters", []) if p["in"] == "path"]
        assert sorted(declared) == sorted(path_parameter_names(path)), f"{method.upper()} {path}"
        assert all(p["required"] for p in op.get("parameters", []) if p["in"] == "path")


def test_ids_and_numbers_are_typed(document: dict[str, Any]) -> None:
    """Where the API requires a UUID or a phone number, the parameter says so; page/limit have their bounds."""
    uuid_names = {"clientAccountId", "featureSetId", "surveyId", "survey_id", "batchId", "feature_set_id"}
    uuid_names |= {"department_id", "operation_id", "process_id"}
    for path, method, op in operations(document):
        for parameter in op.get("parameters", []):
            schema = parameter["schema"]
            if parameter["name"] in uuid_names:
                assert schema["format"] == "uuid", (method, path, parameter["name"])
            if parameter["name"] in ("caller", "business_number"):
                assert schema["pattern"] == r"^\+?[1-9][0-9]{9,14}$", (method, path, parameter["name"])
            if parameter["name"] == "page":
                assert (schema["type"], schema["minimum"], schema["maximum"]) == ("integer", 1, 1_000_000)
            if parameter["name"] == "limit":
                assert (schema["type"], schema["minimum"], schema["maximum"]) == ("integer", 1, 1000)
    required = {
        (p["name"], p["required"])
        for path, _, op in operations(document)
        for p in op.get("parameters", [])
        if p["name"] in ("batchId", "from", "to", "from_date", "caller", "business_number")
    }
    assert required == {(name, True) for name in ("batchId", "from", "to", "from_date", "caller", "business_number")}


def test_no_reference_dangles(document: dict[str, Any]) -> None:
    """ReDoc refuses a document with a ``$ref`` to nothing."""
    schemas = document["components"]["schemas"]
    for ref in set(refs(document)):
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.removeprefix("#/components/schemas/") in schemas, ref
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas


def _pointer(*parts: str) -> str:
    return "#/" + "/".join(part.replace("~", "~0").replace("/", "~1") for part in parts)


def _examples(document: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """(what, JSON pointer of its schema, example) for every example in the document."""
    found: list[tuple[str, str, Any]] = []
    for path, method, op in operations(document):
        base = ("paths", path, method)
        for index, parameter in enumerate(op.get("parameters", [])):
            if "example" in parameter:
                where = _pointer(*base, "parameters", str(index), "schema")
                found.append((f"{method} {path} {parameter['name']}", where, parameter["example"]))
        places = [("requestBody", op.get("requestBody", {}))]
        places += [("responses", status, answer) for status, answer in op["responses"].items()]  # type: ignore[misc]
        for *keys, holder in places:
            for media, entry in holder.get("content", {}).items():
                if "schema" not in entry:
                    continue
                where = _pointer(*base, *keys, "content", media, "schema")
                if "example" in entry:
                    found.append((f"{method} {path} {'/'.join(keys)}", where, entry["example"]))
                for label, named in entry.get("examples", {}).items():
                    found.append((f"{method} {path} {'/'.join(keys)} {label}", where, named["value"]))
    return found


def test_every_example_fits_its_schema(document: dict[str, Any]) -> None:
    examples = _examples(document)
    assert len(examples) > 40
    for what, pointer, example in examples:
        # The document itself is the root, so that "#/components/schemas/..." resolves.
        validator = Draft202012Validator({**document, "$ref": pointer}, format_checker=FORMATS)
        errors = [error.message for error in validator.iter_errors(example)]
        assert not errors, (what, errors)


# --- every request example, sent ----------------------------------------------------------------------------------

# Not 2xx for these, and rightly: no codes on a server whose phones register without proof; a plain GET of the
# WebSocket. Neither is a 400 (a refusal of the example's shape).
NOT_2XX = {
    "POST /app/v1/devices/verify": 404,
    "POST /app/v1/devices/resend": 404,
    "GET /app/v1/stream": 426,
}


def _order(item: tuple[str, str, dict[str, Any]]) -> int:
    """POSTs first (their answers give the batch ids and download links the GETs need), the phone's removal last."""
    path, method, _ = item
    return {"post": 0, "get": 1}.get(method, 2) if path != "/app/v1/devices/me" else 3


def _substituted(value: Any, replacements: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        return {
            key: replacements[key] if key in replacements else _substituted(item, replacements)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_substituted(item, replacements) for item in value]
    return value


async def test_every_request_example_is_taken_as_it_is(
    client: httpx.AsyncClient,
    db: Database,
    settings: Settings,
    runner: JobRunner,
    tenant: Tenant,
    auth: dict[str, str],
) -> None:
    """Each operation sent with its documented examples (parameters and body), ids replaced by the ids of things
    made in this account (label, feature set, survey, batch, logo, download): every one is taken (2xx)."""
    document = (await client.get("/openapi.json")).json()
    org = await make_org(db, tenant.account_id)
    feature_set = await make_feature_set(db, org, "Fresh Flowers", call_me_back=True, survey=True, slot_picker=False)
    survey_example = document["paths"]["/app/v1/surveys/{survey_id}/responses"]["post"]["requestBody"]
    answers = survey_example["content"]["application/json"]["example"]["answers"]
    async with db.transaction() as session:
        survey = await engagement.create_survey(
            session,
            account_id=tenant.account_id,
            feature_set_id=feature_set,
            name="Quality",
            questions=[answer["question"] for answer in answers],
        )
    cmb_example = document["paths"]["/app/v1/call-me-back"]["post"]["requestBody"]["content"]["application/json"]
    await publish(client, runner, tenant.account_id, auth, feature_set, cmb_example["example"]["business_number"])
    label = await add_label(db, settings, tenant.account_id)
    phone = await register_phone(client)
    path_values: dict[str, str] = {
        "clientAccountId": str(tenant.account_id),
        "featureSetId": str(feature_set),
        "surveyId": str(survey.id),
        "survey_id": str(survey.id),
        "logo_file": f"{label.logo_key}.png",
    }
    # Call signals must be recent (at most 7 days old): the example's times become now.
    body_values = {"label_id": str(label.id), **tenant.credentials, "occurredAt": clock.now().isoformat()}
    credentials = {BUSINESS: auth, APP: phone, METRICS: {"Authorization": f"Bearer {METRICS_TOKEN}"}}
    # The analytics API needs its own access level (an extension), which the tenant's key lacks: another account
    # whose key has it (its figures are all zeros) answers it.
    analytics = await create_tenant(db, settings, name="Analytics", access={"analytics": "read"})
    analytics_auth = {"Authorization": f"Bearer {await mint(client, analytics)}"}

    answered: dict[str, int] = {}
    for path, method, op in sorted(operations(document), key=_order):
        name = f"{method.upper()} {path}"
        url = path
        params: dict[str, str] = {}
        headers = dict(credentials.get(family(path), {}))
        if path == "/clients/{clientAccountId}/analytics":
            headers, url = dict(analytics_auth), url.replace("{clientAccountId}", str(analytics.account_id))
        for parameter in op.get("parameters", []):
            where, parameter_name = parameter["in"], parameter["name"]
            if where == "path":
                assert parameter_name in path_values, f"{name}: no value for {{{parameter_name}}}"
                url = url.replace(f"{{{parameter_name}}}", path_values[parameter_name])
            elif parameter_name in path_values or "example" in parameter:
                value = path_values.get(parameter_name, parameter.get("example"))
                (params if where == "query" else headers)[parameter_name] = value
            elif where == "header" and parameter["required"]:
                headers[parameter_name] = parameter["schema"]["enum"][0]
            else:
                assert not parameter["required"], f"{name}: required {parameter_name} has no example"
        body = None
        if "requestBody" in op:
            media = op["requestBody"]["content"]["application/json"]
            assert "example" in media, f"{name}: a body without an example"
            body = _substituted(copy.deepcopy(media["example"]), body_values)
        response = await client.request(method.upper(), url, params=params, headers=headers, json=body)
        answered[name] = response.status_code
        expected = NOT_2XX.get(name)
        if expected is not None:
            assert response.status_code == expected, (name, response.text)
        else:
            assert 200 <= response.status_code < 300, (name, params, body, response.text)
        found = response.json() if response.headers.get("content-type", "").startswith("application/json") else None
        if found is not None:  # the answer is the one documented, too
            answer = op["responses"][str(response.status_code)]["content"][JSON]
            pointer = _pointer("paths", path, method, "responses", str(response.status_code), "content", JSON, "schema")
            validator = Draft202012Validator({**document, "$ref": pointer}, format_checker=FORMATS)
            assert answer["schema"] and not list(validator.iter_errors(found)), (name, found)
        # What the answers give the later requests: batch ids, download links.
        if isinstance(found, dict) and "batch_id" in found:
            path_values["batchId"] = found["batch_id"]
        if isinstance(found, dict) and "url" in found:
            path_values["token"] = unquote(urlsplit(found["url"]).path.rsplit("/", 1)[-1])
        if isinstance(found, dict) and "BatchID: " in str(found.get("message", "")):
            path_values.setdefault("batchId", re.sub(r".*BatchID: ", "", found["message"]))
    assert len(answered) == len(list(operations(document))), answered


async def test_what_the_document_calls_no_uuid_is_refused(
    client: httpx.AsyncClient, tenant: Tenant, auth: dict[str, str]
) -> None:
    """``format: uuid`` is the 8-4-4-4-12 form; ``uuid.UUID`` alone also took a sign, underscores, spaces,
    non-ASCII digits and hyphens anywhere ("+2345678-..." named batch "02345678-...")."""
    for almost in (
        "+2345678-1234-1234-1234-1234567890ab",
        "0_345678-1234-1234-1234-1234567890ab",
        " 2345678-1234-1234-1234-1234567890ab",
        "\uff102345678-1234-1234-1234-1234567890ab",
        "0234567-81234-1234-1234-1234567890ab",
    ):
        response = await client.get(
            f"/v2/clients/{tenant.account_id}/dynamic_call_records", params={"batchId": almost}, headers=auth
        )
        assert (response.status_code, response.json()) == (
            400,
            {"slug": "invalid-input", "message": "batchId is invalid"},
        )
    upper = "02345678-1234-1234-1234-1234567890AB"  # any case is fine (SPEC §2.1)
    response = await client.get(
        f"/v2/clients/{tenant.account_id}/dynamic_call_records", params={"batchId": upper}, headers=auth
    )
    assert response.status_code == 200
    assert response.json()["batch_id"] == upper.lower()
