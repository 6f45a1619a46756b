"""ES256 signatures in a helper process, so that signing call assertions uses another core.

Why: an ECDSA P-256 signature costs ~40 µs of OpenSSL work, about a fifth of a caller-ID lookup, and it runs on
the event loop's thread, which the whole process shares. A thread does not help: the signature releases the GIL,
but taking it back while the loop is busy waits up to the interpreter's switch interval (5 ms) per signature.
A process does: signatures requested during one turn of the loop go over a pipe in one frame, and the answers
come back on the loop like any other I/O, with no thread in between (``asyncio`` subprocess pipes). Per
signature the loop then spends a few microseconds instead of ~40 (bench/personalisation.py, lookup phase).

The helper (``python -m callerid.identity.signing_worker``) is started in the background on the first signature
(signatures are made in-process until it runs), holds the private keys it was sent (by kid), and ends when its
stdin closes, including when this process dies. If it fails, pending and later signatures are made in-process,
exactly as without it.

Frames, both ways: ``<kind: u8><length: u32 LE><payload>``. To the helper: KEY (kid, PEM) and SIGN (kid, the
signing inputs); from it: one SIGNED frame per SIGN frame (the raw R||S signatures, 64 bytes each, in order)
or FAILED (the error text).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import sys
from collections import deque
from typing import Any, BinaryIO

import structlog
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

log = structlog.get_logger("callerid.identity.signing_worker")

KEY, SIGN, SIGNED, FAILED = 1, 2, 3, 4
_HEADER = struct.Struct("<BI")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
SIGNATURE_BYTES = 64
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


def raw_signature(private_key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """ES256 as JWS wants it (RFC 7518 §3.4): R || S, 32 bytes each, not DER."""
    r, s = decode_dss_signature(private_key.sign(data, _ECDSA_SHA256))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _frame(kind: int, payload: bytes) -> bytes:
    return _HEADER.pack(kind, len(payload)) + payload


def _with_kid(kid: str, rest: bytes) -> bytes:
    encoded = kid.encode()
    return _U16.pack(len(encoded)) + encoded + rest


def _split_kid(payload: bytes) -> tuple[str, bytes]:
    (length,) = _U16.unpack_from(payload)
    return payload[2 : 2 + length].decode(), payload[2 + length :]


def sign_frame(kid: str, inputs: list[bytes]) -> bytes:
    parts = [_U32.pack(len(inputs))]
    for data in inputs:
        parts.append(_U32.pack(len(data)))
        parts.append(data)
    return _frame(SIGN, _with_kid(kid, b"".join(parts)))


def key_frame(kid: str, private_key_pem: str) -> bytes:
    return _frame(KEY, _with_kid(kid, private_key_pem.encode()))


def _sign_inputs(body: bytes) -> list[bytes]:
    (count,) = _U32.unpack_from(body)
    inputs, offset = [], 4
    for _ in range(count):
        (length,) = _U32.unpack_from(body, offset)
        inputs.append(body[offset + 4 : offset + 4 + length])
        offset += 4 + length
    return inputs


def serve(source: BinaryIO, sink: BinaryIO) -> None:
    """The helper's loop: answer frames from ``source`` until it ends."""
    keys: dict[str, ec.EllipticCurvePrivateKey] = {}
    while True:
        header = source.read(_HEADER.size)
        if len(header) < _HEADER.size:
            return  # the parent closed our stdin (or died)
        kind, length = _HEADER.unpack(header)
        payload = source.read(length)
        kid, body = _split_kid(payload)
        if kind == KEY:
            key = serialization.load_pem_private_key(body, password=None)
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            keys[kid] = key
            continue
        try:
            private_key = keys[kid]
            answer = _frame(SIGNED, b"".join(raw_signature(private_key, data) for data in _sign_inputs(body)))
        except Exception as exc:
            answer = _frame(FAILED, repr(exc).encode())
        sink.write(answer)
        sink.flush()


class SigningWorker:
    """The parent's side: batches signature requests per loop turn and hands out the answers.

    ``sign`` returns a future; requests made in the same loop turn go in one frame. Frames are answered in
    order, so the batches in flight form a queue. On any failure of the helper, everything waiting (and all later
    requests, via ``usable``) is signed in-process instead.
    """

    def __init__(self) -> None:
        self._process: asyncio.subprocess.Process | None = None
        self._starting: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._known: set[str] = set()
        # per kid: (key, signing input, future) not yet sent; batches sent and not yet answered
        self._pending: dict[str, list[tuple[Any, bytes, asyncio.Future[bytes]]]] = {}
        self._in_flight: deque[list[tuple[Any, bytes, asyncio.Future[bytes]]]] = deque()
        self._flush_scheduled = False
        self.usable = True

    async def sign(self, key: Any, data: bytes) -> bytes:
        """``key``: an ``ActiveKey`` (kid, private key, its PEM); the raw ES256 signature of ``data``."""
        if not self.usable:
            return raw_signature(key.private_key, data)
        if self._process is None:
            # Started on the first signature, in the background: until it runs, signatures are made here (a
            # request never waits for the helper's start-up).
            if self._starting is None:
                self._starting = asyncio.create_task(self._start(), name="signing-worker-start")
            return raw_signature(key.private_key, data)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(key.kid, []).append((key, data, future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        return await future

    async def _start(self) -> None:
        if not self.usable:  # stopped before it started
            return
        try:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "callerid.identity.signing_worker",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
        except Exception:
            self._give_up("signing_worker_start_failed")
            raise
        self._reader = asyncio.create_task(self._read_answers(), name="signing-worker-reader")

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._process is None or self._process.stdin is None or not self.usable:
            self._sign_here([item for batch in self._pending.values() for item in batch])
            self._pending.clear()
            return
        pending, self._pending = self._pending, {}
        try:
            for kid, batch in pending.items():
                if kid not in self._known:
                    self._process.stdin.write(key_frame(kid, batch[0][0].private_key_pem))
                    self._known.add(kid)
                self._process.stdin.write(sign_frame(kid, [data for _, data, _ in batch]))
                self._in_flight.append(batch)
        except Exception:
            self._sign_here([item for batch in pending.values() for item in batch])
            self._give_up("signing_worker_write_failed")

    async def _read_answers(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        stdout = self._process.stdout
        try:
            while True:
                kind, length = _HEADER.unpack(await stdout.readexactly(_HEADER.size))
                payload = await stdout.readexactly(length)
                batch = self._in_flight.popleft()
                if kind != SIGNED:
                    log.warning("signing_worker_refused", error=payload.decode(errors="replace"))
                    self._sign_here(batch)
                    continue
                for index, (_, _, future) in enumerate(batch):
                    if not future.done():
                        future.set_result(payload[index * SIGNATURE_BYTES : (index + 1) * SIGNATURE_BYTES])
        except asyncio.CancelledError:
            raise
        except Exception:
            self._give_up("signing_worker_failed")

    def _sign_here(self, items: list[tuple[Any, bytes, asyncio.Future[bytes]]]) -> None:
        for key, data, future in items:
            if not future.done():
                try:
                    future.set_result(raw_signature(key.private_key, data))
                except Exception as exc:
                    future.set_exception(exc)

    def _give_up(self, event: str) -> None:
        """The helper is unusable: sign everything waiting here, and from now on in-process."""
        if self.usable:
            log.error(event, exc_info=True)
        self.usable = False
        while self._in_flight:
            self._sign_here(self._in_flight.popleft())
        self._sign_here([item for batch in self._pending.values() for item in batch])
        self._pending.clear()

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        process, self._process = self._process, None
        self.usable = False
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), timeout=5)
        except TimeoutError:
            process.kill()
            await process.wait()


def main() -> None:
    serve(sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    main()
