"""One HTTP delivery of an event (SPEC §9.4): signed POST, timeouts, outcome classification.

A :class:`Deliverer` is a process-wide object (one connection pool, one concurrency limit per webhook):
``Runtime.deliverer``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import time
import uuid
import weakref
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import aiohttp
import httpx
import yarl

from callerid import clock
from callerid.config import Settings
from callerid.webhooks import signing
from callerid.webhooks.models import (
    OUTCOME_CONNECTION_ERROR,
    OUTCOME_HTTP_ERROR,
    OUTCOME_SUCCESS,
    OUTCOME_TIMEOUT,
)
from callerid.webhooks.safety import RefusedDestination, guarded_connector

# Response bodies are ignored (SPEC §9.4); read a little so keep-alive connections can be reused.
MAX_RESPONSE_BYTES = 64 * 1024
# Test sends show the start of the receiver's answer: this many characters, from at most this many raw bytes.
EXCERPT_CHARS = 500
EXCERPT_RAW_BYTES = 4 * EXCERPT_CHARS


class WebhookBusy(Exception):
    """The webhook already has its maximum of deliveries in flight in this process."""


@dataclass(frozen=True)
class AttemptResult:
    outcome: str
    status_code: int | None
    error: str | None
    started_at: datetime
    duration_ms: int
    # The first EXCERPT_CHARS characters of the answer's body; only captured for test sends.
    response_excerpt: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.outcome == OUTCOME_SUCCESS


class Deliverer:
    """Signed POSTs through one aiohttp session (its connection pool shared by every webhook).

    aiohttp rather than httpx: posting to a local receiver, httpx reached ~530 requests/s on one core, well
    under what the rest of a delivery costs; aiohttp (C HTTP parser, lighter request path) several times that.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None  # made on first use, inside the running loop
        # One limit per webhook in this process; entries vanish when no delivery holds them.
        self._limits: weakref.WeakValueDictionary[uuid.UUID, asyncio.Semaphore] = weakref.WeakValueDictionary()

    def _client(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None or session.closed:
            settings = self.settings
            session = aiohttp.ClientSession(
                connector=guarded_connector(allow_private=settings.webhook_allow_private),
                # The whole call is bounded by asyncio.timeout in _post; these bound each phase.
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    sock_connect=settings.webhook_connect_timeout_seconds,
                    sock_read=settings.webhook_read_timeout_seconds,
                    # To the millisecond, as SPEC §9.4 gives them (aiohttp rounds timeouts of 5 s and more up to
                    # the next whole second of the loop's clock unless told otherwise).
                    ceil_threshold=math.inf,
                ),
                # Bodies are read raw (bounded, never inflated in full): _excerpt undoes gzip/deflate itself.
                auto_decompress=False,
                trust_env=False,  # no environment proxies: the guard must see the real destination
                cookie_jar=aiohttp.DummyCookieJar(),  # one webhook's cookies never go to another
                headers={"Accept-Encoding": "gzip, deflate"},  # what _excerpt can undo
            )
            self._session = session
        return session

    def _limit(self, webhook_id: uuid.UUID) -> asyncio.Semaphore:
        semaphore = self._limits.get(webhook_id)
        if semaphore is None:
            semaphore = asyncio.Semaphore(max(1, self.settings.webhook_max_concurrency_per_webhook))
            self._limits[webhook_id] = semaphore
        return semaphore

    def is_success(self, status_code: int) -> bool:
        if self.settings.webhook_accept_any_2xx:
            return 200 <= status_code < 300
        return status_code == 200

    async def send(
        self,
        *,
        webhook_id: uuid.UUID,
        url: str,
        secrets: str | Sequence[str],
        event_id: uuid.UUID,
        body: bytes,
        wait_for_slot: float | None = None,
        excerpt: bool = False,
    ) -> AttemptResult:
        """POST ``body`` to ``url`` once; never raises for delivery problems, it classifies them.

        ``secrets``: the signing secret, or the current and the previous one after a rotation (one
        signature each). With ``wait_for_slot``, raises :class:`WebhookBusy` when the webhook's concurrency
        limit stays full that long, so that the caller can give its job-runner slot to other work. With
        ``excerpt`` (test sends), the result carries the start of the answer's body.
        """
        limit = self._limit(webhook_id)
        try:
            async with asyncio.timeout(wait_for_slot):
                await limit.acquire()
        except TimeoutError:
            raise WebhookBusy(webhook_id) from None
        try:
            started_at = clock.now()
            began = time.perf_counter()  # a duration measurement, not business time
            outcome, status_code, error, answer = await self._post(url, secrets, event_id, body, excerpt=excerpt)
            duration_ms = round((time.perf_counter() - began) * 1000)
        finally:
            limit.release()
        return AttemptResult(outcome, status_code, error, started_at, duration_ms, answer)

    async def _post(
        self, url: str, secrets: str | Sequence[str], event_id: uuid.UUID, body: bytes, *, excerpt: bool = False
    ) -> tuple[str, int | None, str | None, str | None]:
        settings = self.settings
        kept = bytearray() if excerpt else None
        try:
            async with asyncio.timeout(settings.webhook_total_timeout_seconds):
                # The address check happens at connect time (safety.guarded_connector), for every new
                # connection, against the address actually connected to; kept-alive connections were
                # checked when they were opened.
                timestamp = int(clock.now().timestamp())
                headers = {
                    "Content-Type": "application/json",
                    "User-Agent": settings.webhook_user_agent,
                    **signing.headers(secrets, str(event_id), timestamp, body),
                }
                async with self._client().post(
                    _target(url),
                    data=body,
                    headers=headers,
                    allow_redirects=False,  # a redirect is a failed attempt
                ) as response:
                    status_code = response.status
                    content_encoding = response.headers.get("Content-Encoding", "")
                    received = 0
                    # Read (and drop) the body so that the connection can be reused; a larger one closes it.
                    while chunk := await response.content.readany():
                        if kept is not None and len(kept) < EXCERPT_RAW_BYTES:
                            kept += chunk[: EXCERPT_RAW_BYTES - len(kept)]
                        received += len(chunk)
                        if received > MAX_RESPONSE_BYTES:
                            break
        except aiohttp.ConnectionTimeoutError:
            return OUTCOME_TIMEOUT, None, f"no connection within {settings.webhook_connect_timeout_seconds:g} s", None
        except aiohttp.ServerTimeoutError:
            return OUTCOME_TIMEOUT, None, f"no data within {settings.webhook_read_timeout_seconds:g} s", None
        except TimeoutError:
            return OUTCOME_TIMEOUT, None, f"no answer within {settings.webhook_total_timeout_seconds:g} s", None
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, RefusedDestination):
                return OUTCOME_CONNECTION_ERROR, None, str(exc.os_error), None
            return OUTCOME_CONNECTION_ERROR, None, _describe(exc), None
        except (aiohttp.ClientError, httpx.InvalidURL, ValueError) as exc:
            # ValueError: a stored URL that aiohttp cannot send (checked when saved; the rules may change).
            return OUTCOME_CONNECTION_ERROR, None, _describe(exc), None
        answer = None if kept is None else _excerpt(bytes(kept), content_encoding)
        if self.is_success(status_code):
            return OUTCOME_SUCCESS, status_code, None, answer
        return OUTCOME_HTTP_ERROR, status_code, f"HTTP {status_code}", answer

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


@functools.lru_cache(maxsize=1024)
def _target(url: str) -> yarl.URL:
    """The URL as sent: encoded as httpx encodes it (the parser ``safety.check_url_syntax`` validates with),
    so that a webhook is called exactly as stored, and aiohttp does not re-quote it."""
    return yarl.URL(str(httpx.URL(url)), encoded=True)


def _excerpt(raw: bytes, content_encoding: str) -> str:
    """The first characters of an answer from its first raw bytes: gzip/deflate undone with a bounded output
    (never the whole body in memory), then UTF-8 with replacement characters."""
    encoding = content_encoding.strip().lower()
    if encoding in ("gzip", "x-gzip", "deflate"):
        wbits = zlib.MAX_WBITS | 16 if encoding != "deflate" else zlib.MAX_WBITS
        try:
            raw = zlib.decompressobj(wbits).decompress(raw, EXCERPT_RAW_BYTES)
        except zlib.error:
            # Some servers send raw deflate data without the zlib header; else shown as received.
            with contextlib.suppress(zlib.error):
                raw = zlib.decompressobj(-zlib.MAX_WBITS).decompress(raw, EXCERPT_RAW_BYTES)
    return raw.decode("utf-8", errors="replace")[:EXCERPT_CHARS]


def _describe(exc: Exception) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
