"""Idempotent POSTs: the same ``Idempotency-Key`` with the same request answers the first answer again and does the
work once; with another request it is refused. Free of HTTP: the routes hand over the key, the request's fingerprint
and, with the work's own write, the answer to keep (``Claim.answer_step`` / ``Claim.answer_in``).

How "once" holds, also when retries race and across processes and crashes:

1. ``begin`` claims the key in a short transaction of its own: a new row with a random claim token and a lease
   (``idempotency_lease_seconds``). Two requests with one key cannot both claim it: the row is unique per account and
   key (PostgreSQL makes the second INSERT wait for the first and then do nothing; SQLite has one writer). The loser
   sees the claim and answers 409 ``idempotency-key-in-progress`` with ``Retry-After``.
2. The work's own write also stores the answer, in the same transaction, on the condition that the row still holds
   this request's claim token (a ``Step`` with ``expect=1``): either both commit or neither does.
3. A request that fails before its work committed gives the key back (``release``). One that dies (a crash, a
   SIGKILL) leaves its claim; the lease runs out and the next retry takes the key over. If the first request was only
   slow, its write then finds another token on the row and rolls back: the work is still done once.

This is the design of Stripe's idempotency keys and of the IETF draft "The Idempotency-Key HTTP Header Field"
(409 for a request still in progress, 422 for a key reused with another request); hand-written because it must
share the work's own transaction, which no library can do from outside.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson
from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from callerid import clock
from callerid.config import Settings
from callerid.db import Database
from callerid.db.write import OnConflict, SessionTx, Step, WriteConflict
from callerid.failures import Busy, InvalidInput, Unprocessable
from callerid.idempotency.models import MAX_KEY_LENGTH, IdempotencyKey

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
REPLAYED = {REPLAYED_HEADER: "true"}  # the header of an answer given again
_KEYS = IdempotencyKey.__table__

_ANSWER = (
    update(_KEYS)
    .where(_KEYS.c.id == bindparam("b_id"), _KEYS.c.claim == bindparam("b_claim"))
    .values(status_code=bindparam("b_status"), body=bindparam("b_body"), claim=None, claimed_until=None)
)


_CLAIM = OnConflict(
    lambda insert: (
        insert(_KEYS)
        .values(
            id=bindparam("id"),
            account_id=bindparam("account_id"),
            key=bindparam("key"),
            fingerprint=bindparam("fingerprint"),
            claim=bindparam("claim"),
            claimed_until=bindparam("claimed_until"),
            created_at=bindparam("created_at"),
        )
        .on_conflict_do_nothing(index_elements=[_KEYS.c.account_id, _KEYS.c.key])
        .returning(_KEYS.c.id)
    )
)


@dataclass(frozen=True, slots=True)
class Answer:
    """The first answer given with a key: its status and JSON content."""

    status: int
    content: Any


@dataclass(frozen=True, slots=True)
class Claim:
    """This request holds the key: its work's write keeps the answer with ``answer_step`` (or ``answer_in``)."""

    row_id: uuid.UUID
    token: uuid.UUID
    key: str

    def answer_step(self, status: int, content: Any) -> Step:
        """The step that keeps ``content`` as the key's answer, in the work's own write; it rolls that write back
        (``WriteConflict``) if this request no longer holds the key."""
        values = {"b_id": self.row_id, "b_claim": self.token, "b_status": status, "b_body": orjson.dumps(content)}
        return Step(_ANSWER, values, expect=1)

    async def answer_in(self, session: AsyncSession, status: int, content: Any) -> None:
        """``answer_step`` inside a session's transaction (work written through a session)."""
        step = self.answer_step(status, content)
        if await SessionTx(session).execute(step.statement, step.values) != 1:
            raise WriteConflict("the idempotency key was taken over by another request")


def checked_key(raw: str) -> str:
    """The header's value, when it is a usable key: 1-255 visible ASCII characters (spaces inside allowed)."""
    key = raw.strip()
    if not key or len(key) > MAX_KEY_LENGTH or not all(" " <= c <= "~" for c in key):
        raise InvalidInput(f"{HEADER} must be 1-{MAX_KEY_LENGTH} printable ASCII characters", field=HEADER)
    return key


def fingerprint(method: str, path: str, body: bytes) -> str:
    """What makes two requests "the same": method, path (with its account) and body, byte for byte."""
    digest = hashlib.sha256(method.encode() + b"\0" + path.encode() + b"\0")
    digest.update(body)
    return digest.hexdigest()


def _in_progress(key: str) -> Busy:
    # Most requests take milliseconds: a second is a fair wait, whatever is left of the holder's lease.
    return Busy(
        "idempotency-key-in-progress",
        f"a request with {HEADER} {key!r} is still being processed; retry later",
        field=HEADER,
        retry_after=1,
    )


async def begin_if_keyed(
    db: Database, settings: Settings, account_id: uuid.UUID, key: str | None, method: str, path: str, body: bytes
) -> Claim | Answer | None:
    """``begin`` for a request that sent a key (``key`` is the header's value); None when it sent none."""
    if key is None:
        return None
    return await begin(db, settings, account_id, key, fingerprint(method, path, body))


def answering(
    keyed: Claim | Answer | None, answer_of: Callable[[Any], tuple[int, Any]]
) -> Callable[[Any], Step] | None:
    """For a service that stores its work in one write: given the work's result, the statement that keeps the
    request's answer (``answer_of(result)``: status and content) in that write; None when the request has no key."""
    if not isinstance(keyed, Claim):
        return None
    claim = keyed
    return lambda result: claim.answer_step(*answer_of(result))


@asynccontextmanager
async def holding(db: Database, claim: Claim | Answer | None) -> AsyncIterator[None]:
    """Around a keyed request's work: on failure the key is given back (nothing was done, a retry may do it); if
    the work's write found the key taken over (this request outlived its lease), the work was rolled back and the
    request is answered like one arriving while the other holds the key."""
    try:
        yield
    except WriteConflict as conflict:
        if not isinstance(claim, Claim):
            raise
        raise _in_progress(claim.key) from conflict
    except BaseException:
        if isinstance(claim, Claim):
            await release(db, claim)
        raise


async def begin(
    db: Database, settings: Settings, account_id: uuid.UUID, key: str, request_fingerprint: str
) -> Claim | Answer:
    """Claim ``key`` for this request, or the answer it already has. Raises ``Unprocessable`` (422) when the key was
    used with another request and ``Busy`` (409 with Retry-After) while another request holds it."""
    key = checked_key(key)
    now = clock.now()
    lease = timedelta(seconds=settings.idempotency_lease_seconds)
    token = uuid.uuid4()
    row_id = uuid.uuid4()
    values = {
        "id": row_id,
        "account_id": account_id,
        "key": key,
        "fingerprint": request_fingerprint,
        "claim": token,
        "claimed_until": now + lease,
        "created_at": now,
    }
    # A new key, the usual case: one statement through the write seam (its fast path on either database).
    (claimed,) = await db.write([Step(_CLAIM.of_database(db), values, returning=True)])
    if claimed:
        return Claim(row_id, token, key)
    async with db.transaction() as session:
        found = (
            await session.execute(select(IdempotencyKey).where(_KEYS.c.account_id == account_id, _KEYS.c.key == key))
        ).scalar_one()
        expired = found.created_at <= now - timedelta(hours=settings.idempotency_key_hours)
        if not expired and found.fingerprint != request_fingerprint:
            raise Unprocessable(
                "idempotency-key-reused",
                f"{HEADER} {key!r} was already used with another request (a different method, path or body)",
                field=HEADER,
            )
        if not expired and found.status_code is not None:
            return Answer(found.status_code, orjson.loads(found.body or b"null"))
        if not expired and found.claimed_until is not None and found.claimed_until > now:
            raise _in_progress(key)
        # Expired, or its request died before its work committed (the lease ran out): this request takes it over.
        # The claim in the WHERE makes two retries that take it over at once settle on one of them.
        held_by = _KEYS.c.claim.is_(None) if found.claim is None else _KEYS.c.claim == found.claim
        taken = await session.execute(
            update(_KEYS)
            .where(_KEYS.c.id == found.id, held_by)
            .values(
                fingerprint=request_fingerprint,
                claim=token,
                claimed_until=now + lease,
                status_code=None,
                body=None,
                created_at=now,
            )
        )
        if getattr(taken, "rowcount", 0) != 1:
            raise _in_progress(key)
        return Claim(found.id, token, key)


async def release(db: Database, claim: Claim) -> None:
    """Give the key back: this request failed before its work committed, so a retry may do the work."""
    async with db.transaction() as session:
        await session.execute(delete(_KEYS).where(_KEYS.c.id == claim.row_id, _KEYS.c.claim == claim.token))
