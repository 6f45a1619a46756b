"""Assertion signing keys: the JWKS, PASSporT verification with it, rotation and retirement."""

from __future__ import annotations

from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import select

from callerid import clock
from callerid.config import Settings
from callerid.db import Database
from callerid.identity.models import SigningKey
from callerid.identity.signer import (
    KEY_REFRESH_SECONDS,
    RETIRED_SIGNING_GRACE_SECONDS,
    Signer,
    passport_claims,
    rotate_keys,
)
from tests.identity.conftest import Cli


def verify(token: str, document: dict[str, Any]) -> dict[str, Any]:
    """Verify a PASSporT the way a third party would: pick the JWKS key by kid, check ES256 and expiry."""
    kid = jwt.get_unverified_header(token)["kid"]
    key = jwt.PyJWKSet.from_dict(document)[kid]
    # PyJWT checks exp/iat against the wall clock; check them against the (movable) service clock instead.
    options = {"require": ["iat", "exp"], "verify_exp": False, "verify_iat": False}
    claims: dict[str, Any] = jwt.decode(token, key.key, algorithms=["ES256"], options=options)
    assert claims["iat"] <= clock.now().timestamp() < claims["exp"], "assertion not valid now"
    return claims


async def fetch_jwks(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def claims_at(settings: Settings, iat: int, call_reason: str | None = "Flower Delivery") -> dict[str, Any]:
    return passport_claims(
        settings,
        caller="911234567898",
        receiver="919234567898",
        name="Flower rasm",
        logo_url="http://testserver/logos/x.png",
        call_reason=call_reason,
        iat=iat,
    )


async def test_jwks_publishes_one_p256_signing_key(client: httpx.AsyncClient) -> None:
    response = await client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=10"
    [key] = response.json()["keys"]
    assert set(key) == {"kty", "crv", "x", "y", "use", "alg", "kid"}
    assert (key["kty"], key["crv"], key["use"], key["alg"]) == ("EC", "P-256", "sig", "ES256")
    # Stable: asking again gives the same key.
    assert (await fetch_jwks(client))["keys"] == [key]


async def test_assertion_verifies_with_the_jwks(client: httpx.AsyncClient, db: Database, settings: Settings) -> None:
    signer = Signer(db, settings)
    now = int(clock.now().timestamp())
    token = await signer.sign(claims_at(settings, now))
    header = jwt.get_unverified_header(token)
    document = await fetch_jwks(client)
    assert header == {"alg": "ES256", "typ": "passport", "ppt": "rcd", "kid": document["keys"][0]["kid"]}
    assert verify(token, document) == {
        "orig": {"tn": "911234567898"},
        "dest": {"tn": ["919234567898"]},
        "iat": now,
        "exp": now + settings.assertion_ttl_seconds,
        "rcd": {"nam": "Flower rasm", "icn": "http://testserver/logos/x.png"},
        "crn": "Flower Delivery",
    }


async def test_no_call_reason_means_no_crn(db: Database, settings: Settings) -> None:
    claims = claims_at(settings, 1_700_000_000, call_reason=None)
    assert "crn" not in claims
    assert claims["rcd"] == {"nam": "Flower rasm", "icn": "http://testserver/logos/x.png"}


async def test_a_tampered_assertion_does_not_verify(
    client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    token = await Signer(db, settings).sign(claims_at(settings, int(clock.now().timestamp())))
    header, _payload, signature = token.split(".")
    forged = jwt.api_jws.base64url_encode(b'{"orig":{"tn":"1"}}').decode()
    with pytest.raises(jwt.InvalidSignatureError):
        verify(f"{header}.{forged}.{signature}", await fetch_jwks(client))


async def test_rotation_keeps_the_old_key_until_its_assertions_expire(
    client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    clock.freeze(clock.now())
    signer = Signer(db, settings)
    old_token = await signer.sign(claims_at(settings, int(clock.now().timestamp())))
    old_kid = jwt.get_unverified_header(old_token)["kid"]

    async with db.transaction() as session:
        rotation = await rotate_keys(session)
    assert rotation.retired == [old_kid] and rotation.kid != old_kid

    # Another process's signer still holds the old key until its cache is stale; the first signature after
    # that still uses it while the key is re-read in the background; then the new key signs.
    assert jwt.get_unverified_header(await signer.sign(claims_at(settings, 1)))["kid"] == old_kid
    clock.advance(KEY_REFRESH_SECONDS)
    assert jwt.get_unverified_header(await signer.sign(claims_at(settings, 1)))["kid"] == old_kid
    await signer.wait_refreshed()
    new_token = await signer.sign(claims_at(settings, int(clock.now().timestamp())))
    assert jwt.get_unverified_header(new_token)["kid"] == rotation.kid

    document = await fetch_jwks(client)
    assert [key["kid"] for key in document["keys"]] == [rotation.kid, old_kid]  # active first
    assert verify(old_token, document)["orig"] == {"tn": "911234567898"}
    assert verify(new_token, document)["orig"] == {"tn": "911234567898"}

    # Until every assertion the old key can have signed has expired (retirement + signing grace + lifetime)
    # it stays published; just after, it is gone.
    clock.advance(RETIRED_SIGNING_GRACE_SECONDS - KEY_REFRESH_SECONDS + settings.assertion_ttl_seconds - 1)
    assert [key["kid"] for key in (await fetch_jwks(client))["keys"]] == [rotation.kid, old_kid]
    clock.advance(2)
    document = await fetch_jwks(client)
    assert [key["kid"] for key in document["keys"]] == [rotation.kid]
    with pytest.raises(KeyError):
        verify(old_token, document)
    # The retired key is kept in the database (history), just no longer published.
    async with db.session() as session:
        kids = set((await session.execute(select(SigningKey.kid))).scalars())
    assert kids == {old_kid, rotation.kid}


async def test_signer_creates_the_first_key_once(db: Database, settings: Settings) -> None:
    signers = [Signer(db, settings) for _ in range(3)]
    kids = {jwt.get_unverified_header(await s.sign(claims_at(settings, 1)))["kid"] for s in signers}
    async with db.session() as session:
        stored = list((await session.execute(select(SigningKey.kid))).scalars())
    assert len(kids) == 1 and stored == list(kids)


def test_cli_rotate_and_list(cli: Cli) -> None:
    first = cli.run("signing-keys", "rotate", "--json").json()
    second = cli.run("signing-keys", "rotate", "--json").json()
    assert second["retired_kids"] == [first["active_kid"]]
    listed = cli.run("signing-keys", "list", "--json").json()["keys"]
    by_kid = {key["kid"]: key for key in listed}
    assert by_kid[second["active_kid"]]["active"] is True
    assert by_kid[first["active_kid"]]["active"] is False
    assert by_kid[first["active_kid"]]["published"] is True


def test_cli_registers_devices(cli: Cli) -> None:
    registered = cli.run(
        "devices", "register", "--number", "919234567898", "--platform", "android", "--app-version", "1.10.0", "--json"
    ).json()
    assert set(registered) == {"device_id", "device_token"}
    again = cli.run(
        "devices", "register", "--number", "919234567898", "--platform", "ios", "--app-version", "2.0", "--json"
    ).json()
    assert again["device_id"] != registered["device_id"]
    bad = cli.run("devices", "register", "--number", "12", "--platform", "android", "--app-version", "1", "--json")
    assert "phone_number is invalid" in bad.failed()
    gone = cli.run("devices", "unregister", "--number", "919234567898", "--json").json()
    assert gone == {"unregistered": True, "device_id": again["device_id"]}
    assert "no device" in cli.run("devices", "unregister", "--number", "919234567898", "--json").failed()
    assert "phone_number is invalid" in cli.run("devices", "unregister", "--number", "x", "--json").failed()
