"""Signing call assertions in the helper process (identity.signing_worker), and falling back to in-process."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import jwt
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from callerid.config import Settings
from callerid.db import Database
from callerid.identity import signing_worker
from callerid.identity.signer import Signer, new_signing_key
from callerid.identity.signing_worker import SigningWorker, key_frame, serve, sign_frame
from tests.identity.test_keys import claims_at, fetch_jwks

ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


def check(private_key: ec.EllipticCurvePrivateKey, data: bytes, raw: bytes) -> None:
    """Raises InvalidSignature unless ``raw`` (R||S) signs ``data``."""
    assert len(raw) == 64
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    private_key.public_key().verify(der, data, ECDSA_SHA256)


class FakeKey:
    """What the worker needs of an ActiveKey."""

    def __init__(self) -> None:
        stored = new_signing_key()
        self.kid = stored.kid
        self.private_key_pem = stored.private_key_pem
        loaded = serialization.load_pem_private_key(stored.private_key_pem.encode(), password=None)
        assert isinstance(loaded, ec.EllipticCurvePrivateKey)
        self.private_key = loaded


def test_the_helper_loop_signs_each_input_of_a_frame_in_order() -> None:
    key = FakeKey()
    inputs = [b"first", b"second" * 100, b""]
    source = io.BytesIO(key_frame(key.kid, key.private_key_pem) + sign_frame(key.kid, inputs))
    sink = io.BytesIO()
    serve(source, sink)
    answer = sink.getvalue()
    assert answer[0] == signing_worker.SIGNED
    signatures = answer[5:]
    assert len(signatures) == 64 * len(inputs)
    for index, data in enumerate(inputs):
        check(key.private_key, data, signatures[index * 64 : (index + 1) * 64])
    with pytest.raises(InvalidSignature):
        check(key.private_key, b"first", signatures[64:128])


def test_the_helper_answers_failed_for_a_key_it_was_never_sent() -> None:
    sink = io.BytesIO()
    serve(io.BytesIO(sign_frame("unknown-kid", [b"x"])), sink)
    assert sink.getvalue()[0] == signing_worker.FAILED


async def started(worker: SigningWorker, key: FakeKey) -> None:
    """Until the helper runs, signatures are made in-process: wait for it."""
    await worker.sign(key, b"start the helper")
    assert worker._starting is not None
    await worker._starting
    assert worker._process is not None


async def test_concurrent_signatures_come_back_to_their_own_requests() -> None:
    keys = [FakeKey(), FakeKey()]  # two kids in one loop turn: one frame each, both answered in order
    worker = SigningWorker()
    try:
        await started(worker, keys[0])
        inputs = [(keys[i % 2], f"input {i}".encode()) for i in range(200)]
        signatures = await asyncio.gather(*(worker.sign(key, data) for key, data in inputs))
        assert worker.usable
        for (key, data), raw in zip(inputs, signatures, strict=True):
            check(key.private_key, data, raw)
    finally:
        await worker.stop()


async def test_a_helper_that_dies_is_replaced_by_signing_in_process() -> None:
    key = FakeKey()
    worker = SigningWorker()
    try:
        await started(worker, key)
        check(key.private_key, b"warm", await worker.sign(key, b"warm"))  # signed by the helper
        assert worker._process is not None and worker.usable
        worker._process.kill()
        await worker._process.wait()
        # Whatever was waiting or comes later is still signed, here.
        signatures = await asyncio.gather(*(worker.sign(key, f"after {i}".encode()) for i in range(20)))
        for index, raw in enumerate(signatures):
            check(key.private_key, f"after {index}".encode(), raw)
        assert not worker.usable
    finally:
        await worker.stop()


async def test_the_first_signatures_do_not_wait_for_the_helper_and_stop_ends_it() -> None:
    worker = SigningWorker()
    key = FakeKey()
    check(key.private_key, b"first", await worker.sign(key, b"first"))  # made here while the helper starts
    assert worker._starting is not None
    await worker._starting
    process = worker._process
    assert process is not None and process.returncode is None
    await worker.stop()
    assert process.returncode is not None


@pytest.mark.parametrize("signing_process", [True, False])
async def test_assertions_verify_with_the_jwks_with_or_without_the_helper(
    db: Database, settings: Settings, client: Any, signing_process: bool
) -> None:
    signer = Signer(db, settings.model_copy(update={"signing_process": signing_process}))
    try:
        await signer.prepare()
        tokens = await asyncio.gather(*(signer.sign(claims_at(settings, 1_753_088_751 + i)) for i in range(10)))
    finally:
        await signer.stop()
    document = await fetch_jwks(client)
    for index, token in enumerate(tokens):
        claims = verify_at(token, document)
        assert claims["iat"] == 1_753_088_751 + index


def verify_at(token: str, document: dict[str, Any]) -> dict[str, Any]:
    """Verify by the JWKS, without the "valid now" check (these claims carry fixed times)."""
    kid = jwt.get_unverified_header(token)["kid"]
    key = jwt.PyJWKSet.from_dict(document)[kid]
    claims: dict[str, Any] = jwt.decode(token, key.key, algorithms=["ES256"], options={"verify_exp": False})
    return claims
