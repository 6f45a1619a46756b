"""Property-based fuzzing of the whole HTTP API against its own OpenAPI document (Schemathesis + Hypothesis).

A real ``callerid serve`` (on a new SQLite file, then on a new PostgreSQL database) gets an account, an API key, a
dynamic label, a feature set with Call Me Back and a survey, and a listed business number, all made with the CLI and
the API; a phone registers (verifier ``none``). The document is loaded from the running server's
``/openapi.json`` and every operation is fuzzed in both generation modes: **positive** (data the document says is
valid) and **negative** (data it says is invalid). Requests carry the real access token (the device token on
``/app/...``, the metrics token on ``/metrics``) and, for most cases, the real ``clientAccountId``; ids the document
can only describe as "a UUID" (label, feature set, survey, batch) and the listed business number are put in place
of generated ones in part of the cases, so that the requests reach past the "not found" answers. Every response
is checked for what means "the document is contradicted, or the server broke":

- ``not_a_server_error``: no 5xx, except the one 500 the API keeps from the reference service for an unparsable
  bearer token (SPEC §3.4 #2), which is documented and must be exactly that body;
- ``status_code_conformance``, ``content_type_conformance``, ``response_headers_conformance`` (``Retry-After``,
  ``Allow``), ``response_schema_conformance``: the answer is one the document describes, as it describes it;
- ``negative_data_rejection``: what the document calls invalid is refused.

``positive_data_acceptance`` is left out on purpose: data the document calls valid is legitimately refused by
business rules a schema cannot express (a label of another account, an ``ends_at`` already in the past, a survey
that is not the business number's), so its failures would be noise, not contradictions.

Bounded for CI: ``EXAMPLES`` cases per operation and mode (Hypothesis, derandomized, no shrinking), within
``BUDGET_SECONDS`` of fuzzing per database (each operation and mode gets an equal share of what is left; cases past
it are not sent). Rate limits are raised on this server so that they do not answer most requests; the phone's
unregistration (``DELETE /app/v1/devices/me``) gets a fresh phone for every case.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import secrets
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from callerid import openapi
from callerid.openapi import PHONE_PATTERN, TOKEN_PARSE_ERROR
from tests.conftest import fresh_postgresql_database
from tests.labels.images import image_bytes
from tests.personalisation.processes import CALLERID, STARTUP_SECONDS, Deployment

pytestmark = pytest.mark.slow

# Per operation and generation mode, and seconds of fuzzing per database (set-up and start-up come on top, ~20 s).
# A deeper run by hand: CALLERID_FUZZ_EXAMPLES=500 CALLERID_FUZZ_BUDGET=1800 pytest tests/test_fuzz_api.py
EXAMPLES = int(os.environ.get("CALLERID_FUZZ_EXAMPLES", "30"))
BUDGET_SECONDS = float(os.environ.get("CALLERID_FUZZ_BUDGET", "35"))
# Cases every operation and mode gets whatever the budget says: on a loaded machine the first example of a strategy
# can take longer than a pair's share, and an operation never exercised would pass unseen.
MIN_CASES = 3
MODES = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
UNREGISTER = "DELETE /app/v1/devices/me"
BUSINESS_NUMBER = "910987654321"
QUESTIONS = ["How was the delivery experience?", "Anything else?"]
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_PHONE = re.compile(PHONE_PATTERN)


@pytest.fixture(params=["sqlite", "postgresql"])
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    if request.param == "sqlite":
        yield Deployment(tmp_path)
        return
    with fresh_postgresql_database("callerid_fuzz") as url:
        yield Deployment(tmp_path, database_url=url)


@contextlib.contextmanager
def serving(deployment: Deployment, log: Path, **extra: str) -> Iterator[None]:
    """``callerid serve`` with its output in ``log`` (read on failure), stopped afterwards."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            [str(CALLERID), "serve"], cwd=deployment.root, env=deployment.env(**extra), stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            assert process.poll() is None, f"serve exited early:\n{log.read_text()}"
            try:
                if httpx.get(f"{deployment.base_url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"serve did not become healthy:\n{log.read_text()}"
            time.sleep(0.1)  # waiting for another process to start, not for business time
        yield
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@dataclass
class World:
    """What the fuzzer substitutes into generated requests: real credentials and the ids of real things."""

    base: str
    account_id: str
    key_id: str
    api_key: str
    token: str = ""
    device_token: str = ""
    device_number: str = "919876500001"
    metrics_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    label_id: str = ""
    feature_set_id: str = ""
    survey_id: str = ""
    batch_id: str = ""

    def credential(self, path: str) -> str | None:
        """The token an operation on ``path`` needs, if any."""
        fam = openapi.family(path)
        if fam == openapi.BUSINESS:
            return self.token
        if fam == openapi.METRICS:
            return self.metrics_token
        if fam == openapi.APP:
            return self.device_token
        return None


def set_up(deployment: Deployment, tmp_path: Path) -> World:
    """The account, key, label, tree, feature set and survey, with the CLI (before the server starts)."""
    account = deployment.cli_json("accounts", "create", "--name", "Fuzz Flowers", "--admin-email", "admin@fuzz.test")
    account_id = account["client_account_id"]
    # Every feature, and the analytics API's own access level (an extension, only when named).
    every = "call_personalisation=write,number_management=write,call_me_back=write,user_feedback=write,analytics=read"
    key = deployment.cli_json("api-keys", "create", "--account", account_id, "--name", "fuzz", "--access", every)
    logo = tmp_path / "logo.png"
    logo.write_bytes(image_bytes())
    label = deployment.cli_json("labels", "create", "--account", account_id, "--name", "FlowerEra", "--logo", str(logo))
    department = deployment.cli_json("departments", "create", "--account", account_id, "--name", "Flowers")
    operation = deployment.cli_json(
        "operations", "create", "--account", account_id, "--department", department["id"], "--name", "Deliveries",
        "--calling-operation", "Delivery",
    )  # fmt: skip
    process = deployment.cli_json(
        "processes", "create", "--account", account_id, "--operation", operation["id"], "--name", "Door"
    )
    feature_set = deployment.cli_json(
        "feature-sets", "create", "--account", account_id, "--process", process["id"], "--name", "Fresh Flowers",
        "--label", label["id"], "--call-me-back", "--survey",
    )  # fmt: skip
    survey = deployment.cli_json(
        "surveys", "create", "--account", account_id, "--feature-set", feature_set["id"], "--name", "Quality",
        *[arg for question in QUESTIONS for arg in ("--question", question)],
    )  # fmt: skip
    world = World(deployment.base_url, account_id, key["key_id"], key["api_key"])
    world.label_id, world.feature_set_id, world.survey_id = label["id"], feature_set["id"], survey["id"]
    return world


def start(world: World) -> None:
    """Mint the token, register the phone, list the business number and make a batch (on the running server)."""
    base, account = world.base, world.account_id
    minted = httpx.post(
        f"{base}/clients/{account}/token",
        json={"key_id": world.key_id, "api_key": world.api_key},
        headers={"X-Public-Access": "allow"},
    )
    assert minted.status_code == 200, minted.text
    world.token = minted.json()["token"]
    world.device_token = register(base, world.device_number)
    auth = {"Authorization": f"Bearer {world.token}"}
    listed = httpx.post(
        f"{base}/clients/{account}/number_management/feature_sets/{world.feature_set_id}/numbers/publish",
        json={"phone_numbers": [BUSINESS_NUMBER]},
        headers=auth,
    )
    assert listed.status_code == 200, listed.text
    now = int(time.time() * 1000)
    record = {"label_id": world.label_id, "caller_number": BUSINESS_NUMBER, "receiver_number": world.device_number}
    batch = httpx.post(
        f"{base}/v2/clients/{account}/dynamic_call_records",
        json={"call_records": [{**record, "starts_at": now, "ends_at": now + 3_600_000}]},
        headers=auth,
    )
    assert batch.status_code == 200, batch.text
    world.batch_id = batch.json()["batch_id"]
    deadline = time.monotonic() + 30
    while True:  # the list job runs in the server's own job runner
        numbers = httpx.get(f"{base}/clients/{account}/number_management/numbers", headers=auth).json()["numbers"]
        if [n["status"] for n in numbers] == ["listed"]:
            break
        assert time.monotonic() < deadline, numbers
        time.sleep(0.1)  # polling another process's progress


def register(base: str, number: str) -> str:
    response = httpx.post(
        f"{base}/app/v1/devices", json={"phone_number": number, "platform": "android", "app_version": "2.0.0"}
    )
    assert response.status_code == 201, response.text
    token: str = response.json()["device_token"]
    return token


# --- substitutions ------------------------------------------------------------------------------------------------


def _is_uuid(value: Any) -> bool:
    return isinstance(value, str) and _UUID.fullmatch(value) is not None


def _is_phone(value: Any) -> bool:
    return isinstance(value, str) and _PHONE.search(value) is not None


def _is_int64(value: Any) -> bool:
    return type(value) is int and -(2**63) <= value < 2**63


def substitute(case: schemathesis.Case, world: World, rng: random.Random, *, device_token: str | None = None) -> None:
    """Put real ids where the generated ones are valid too (so a negative case stays negative: only a value the
    document accepts is replaced, by another it accepts)."""

    def maybe(
        container: MutableMapping[str, Any] | None, name: str, value: Any, chance: float, valid: Callable[[Any], bool]
    ) -> None:
        if (
            isinstance(container, MutableMapping)
            and name in container
            and valid(container[name])
            and rng.random() < chance
        ):
            container[name] = value

    path, query = case.path_parameters, case.query
    credential = device_token or world.credential(case.operation.path)
    if credential is not None:
        # The generated credential, where it is one (not a negative case's malformed or missing header), becomes
        # the real one; Schemathesis re-reads what the case now negates before it is sent.
        maybe(case.headers, "Authorization", f"Bearer {credential}", 1, lambda v: str(v).startswith("Bearer "))
        maybe(query, "token", credential, 1, lambda v: isinstance(v, str) and v != "")
        positive = case.meta is not None and case.meta.generation.mode.is_positive
        if positive and "Authorization" not in (case.headers or {}) and "token" not in (query or {}):
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {credential}"}
    maybe(path, "clientAccountId", world.account_id, 0.9, _is_uuid)
    maybe(path, "featureSetId", world.feature_set_id, 0.6, _is_uuid)
    maybe(path, "surveyId", world.survey_id, 0.6, _is_uuid)
    maybe(path, "survey_id", world.survey_id, 0.6, _is_uuid)
    maybe(query, "batchId", world.batch_id, 0.6, _is_uuid)
    maybe(query, "feature_set_id", world.feature_set_id, 0.3, _is_uuid)
    maybe(query, "business_number", BUSINESS_NUMBER, 0.6, _is_phone)
    maybe(query, "caller", BUSINESS_NUMBER, 0.3, _is_phone)
    body = case.body if isinstance(case.body, dict) else None
    maybe(body, "business_number", BUSINESS_NUMBER, 0.6, _is_phone)
    maybe(body, "key_id", world.key_id, 0.3, _is_uuid)
    if body is not None and body.get("key_id") == world.key_id:
        # The real pair mints tokens: 10 per account in 30 minutes, then 429 with Retry-After.
        maybe(body, "api_key", world.api_key, 0.5, lambda v: isinstance(v, str) and v.strip() != "")
    records = [body] if body is not None and "label_id" in body else []
    if body is not None and isinstance(body.get("call_records"), list):
        records = [item for item in body["call_records"] if isinstance(item, dict)]
    now = int(time.time() * 1000)
    for record in records:
        maybe(record, "label_id", world.label_id, 0.6, _is_uuid)
        if record.get("label_id") == world.label_id and rng.random() < 0.5:
            # A window holding now, where the generated one was valid too.
            maybe(record, "starts_at", now, 1, lambda v: _is_int64(v) and v >= 0)
            maybe(record, "ends_at", now + 3_600_000, 1, _is_int64)
            for name in ("receiver_number", "receiver"):
                maybe(record, name, world.device_number, 0.5, _is_phone)


# --- checks -------------------------------------------------------------------------------------------------------


def not_a_server_error_but_the_documented_one(ctx: Any, response: Any, case: schemathesis.Case) -> bool | None:
    """``not_a_server_error``, letting through only SPEC §3.4 #2's 500 for an unparsable token, exactly."""
    if response.status_code == 500 and case.operation.path.startswith(("/clients/", "/v2/clients/")):
        with contextlib.suppress(ValueError):
            if response.json() == TOKEN_PARSE_ERROR:
                return None
    return not_a_server_error(ctx, response, case)


CHECKS = [
    not_a_server_error_but_the_documented_one,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@dataclass
class Tally:
    sent: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    outcome: str = "done"


def fuzz(operation: Any, mode: schemathesis.GenerationMode, world: World, slice_end: float, tally: Tally) -> None:
    rng = random.Random(f"{operation.label} {mode}")
    label = f"{operation.method.upper()} {operation.path}"

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(mode))
    def run(case: schemathesis.Case) -> None:
        if tally.sent >= MIN_CASES and time.monotonic() > slice_end:
            return  # past this operation's share of the budget (after the few every pair always gets)
        phone = register(world.base, fresh_number(rng)) if label == UNREGISTER else None
        substitute(case, world, rng, device_token=phone)
        response = case.call(base_url=world.base, timeout=30)
        tally.sent += 1
        tally.statuses[response.status_code] = tally.statuses.get(response.status_code, 0) + 1
        case.validate_response(response, checks=CHECKS)

    try:
        run()
    except Unsatisfiable:
        tally.outcome = "nothing to negate"


def fresh_number(rng: random.Random) -> str:
    """A number for a phone of its own (never the fuzzer's phone, 919876500001)."""
    return f"9198764{rng.randrange(10**5):05d}"


# --- the test -----------------------------------------------------------------------------------------------------


def test_the_api_matches_its_document_under_fuzzing(deployment: Deployment, tmp_path: Path) -> None:
    world = set_up(deployment, tmp_path)
    log = tmp_path / "serve.log"
    environment = {
        # Rate limits that do not answer most of the requests (their 429 is still documented and checked).
        "CALLERID_RATE_LIMIT_GENERAL": "100000/second",
        "CALLERID_RATE_LIMIT_BATCH_V2": "100000/second",
        "CALLERID_DEVICE_VERIFIER": "none",  # phones register at once (the otp flow has its own tests)
        "CALLERID_NUMBER_JOB_DELAY_SECONDS": "0",
        "CALLERID_METRICS_TOKEN": world.metrics_token,
    }
    with serving(deployment, log, **environment):
        start(world)
        schema = schemathesis.openapi.from_url(f"{world.base}/openapi.json", config=schemathesis.Config())
        operations = [result.ok() for result in schema.get_all_operations()]
        # The phone's unregistration last (it gets fresh phones anyway, see fuzz()).
        operations.sort(key=lambda op: f"{op.method.upper()} {op.path}" == UNREGISTER)
        assert len(operations) >= 29
        runs = [(op, mode) for op in operations for mode in MODES]
        tallies: dict[str, Tally] = {}
        failures: list[str] = []
        began = time.monotonic()
        for index, (op, mode) in enumerate(runs):
            now = time.monotonic()
            slice_end = now + max(0.0, began + BUDGET_SECONDS - now) / (len(runs) - index)
            name = f"{op.method.upper()} {op.path} [{mode}]"
            tally = tallies[name] = Tally()
            try:
                fuzz(op, mode, world, slice_end, tally)
            except (AssertionError, BaseExceptionGroup) as exc:  # checks failed: report every operation's
                tally.outcome = "FAILED"
                failures.append(f"{name}:\n{exc}")
        elapsed = time.monotonic() - began
    report = "\n".join(
        f"{name}: {tally.sent} sent, {tally.outcome}, statuses {dict(sorted(tally.statuses.items()))}"
        for name, tally in tallies.items()
    )
    print(f"fuzzed {len(runs)} operation/mode pairs in {elapsed:.1f} s:\n{report}")
    server_log = log.read_text(errors="replace")
    assert not failures, "\n\n".join(failures) + f"\n\n{report}\n\nserver log (tail):\n{server_log[-5000:]}"
    # Every operation was exercised in both modes (or had nothing to negate).
    starved = [name for name, tally in tallies.items() if tally.sent == 0 and tally.outcome == "done"]
    assert not starved, f"no case sent for {starved} within the budget:\n{report}"
    assert "Traceback" not in server_log, server_log[-5000:]
    assert os.path.getsize(log) < 5_000_000
