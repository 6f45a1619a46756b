"""``AsyncClient``: every business endpoint (SPEC §1.4) and the helpers, for asyncio.

One instance is safe to share between the tasks of one event loop: they share one token (minted once by whichever
task needs it first) and the pacing windows.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import date, datetime
from types import TracebackType
from typing import Any, Literal, TypeVar

import httpx

from callerid_client._api import RecordInput, RecordV1Input
from callerid_client._base import BaseClient
from callerid_client._core import Attempts, Call, decode, get, parse_or_raise
from callerid_client.errors import AuthenticationError, CallerIdError, PermissionDeniedError
from callerid_client.jobs import (
    BATCH_SIZE,
    NUMBERS_PER_REQUEST,
    InvalidPolicy,
    NumbersOutcome,
    NumbersProgress,
    NumbersProgressHook,
    PersonaliseResult,
    Progress,
    ProgressHook,
    RecordOutcome,
    final_state,
    note,
    outcome_of,
    pending_outcome,
    prepare_records,
)
from callerid_client.models import (
    BatchAccepted,
    BatchRecordV1,
    BatchStatus,
    BusinessNumber,
    DelistResult,
    DownloadLink,
    FeatureSet,
    FeatureSetsPage,
    Label,
    NumbersPage,
    PublishResult,
    RealtimeResult,
    Token,
    V1Result,
)

T = TypeVar("T")


class AsyncClient(BaseClient):
    """The business API for asyncio. ``transport``: an ``httpx.AsyncBaseTransport`` (tests: ``httpx.MockTransport``);
    ``http_client``: an ``httpx.AsyncClient`` of your own (its ``base_url`` is not used)."""

    def __init__(
        self,
        base_url: str,
        account_id: str,
        key_id: str,
        api_key: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        http_client: httpx.AsyncClient | None = None,
        **options: Any,
    ):
        super().__init__(base_url, account_id, key_id, api_key, **options)
        self._own_http = http_client is None
        self._http = http_client or httpx.AsyncClient(
            timeout=self.options.timeout,
            transport=transport,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
        )
        self._mint_lock = asyncio.Lock()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()

    # --- sending -----------------------------------------------------------------------------------------------

    async def _send(self, call: Call[T]) -> T:
        attempts = Attempts(call, self.options)
        url = call.path if call.path.startswith(("http://", "https://")) else self.base_url + call.path
        while True:
            token = None if call.kind in ("token", "public") else await self._token()
            if token is not None:
                await self._paced(token, call)
            attempts.tries += 1
            try:
                response = await self._http.request(
                    call.method, url, params=call.params, content=call.body, headers=attempts.headers(token)
                )
            except httpx.TransportError as exc:
                await asyncio.sleep(attempts.on_transport_error(exc))
                continue
            body = decode(response)
            if response.is_success:
                return parse_or_raise(call, response, body)
            delay = attempts.on_response(response, body)
            if response.status_code == 401:
                self.tokens.invalidate(token)
            if delay > 0:
                await asyncio.sleep(delay)

    async def _paced(self, token: str, call: Call[Any]) -> None:
        """Waits until the token's windows have room for ``call`` (SPEC §4 limits, kept on this side)."""
        while True:
            wait = self.pacer.reserve(token, call.kind)
            if wait <= 0:
                return
            await asyncio.sleep(wait)

    async def _token(self) -> str:
        token = self.tokens.current()
        if token is not None:
            return token
        async with self._mint_lock:
            token = self.tokens.current()
            if token is not None:  # another task minted it meanwhile
                return token
            return (await self.mint_token()).token

    # --- endpoints ---------------------------------------------------------------------------------------------

    async def mint_token(self) -> Token:
        """T: a new access token (kept and used from now on). Usually not needed: tokens are minted on demand."""
        requested = time.monotonic()
        minted = await self._send(self.api.token(self.key_id, self.api_key))
        self.tokens.put(minted.token, requested)
        return minted

    async def get_token(self) -> str:
        """The current access token, minted if there is none or it is about to expire."""
        return await self._token()

    async def list_labels(self, *, page: int = 1, limit: int = 1000) -> list[Label]:
        """L: one page of the account's dynamic labels, newest first."""
        return await self._send(self.api.labels(page, limit))

    async def iter_labels(self, *, limit: int = 1000) -> AsyncIterator[Label]:
        """Every dynamic label, page after page."""
        page = 1
        while True:
            labels = await self.list_labels(page=page, limit=limit)
            for label in labels:
                yield label
            if len(labels) < limit:
                return
            page += 1

    async def personalise(self, record: RecordInput) -> RealtimeResult:
        """R2: validate one record and push it now. A valid record that could not be delivered answers
        ``status_info.status == "error"`` with the ``reason``; an invalid one raises ``RecordValidationError``."""
        return await self._send(self.api.realtime(record))

    async def personalise_batch(self, records: Iterable[RecordInput]) -> BatchAccepted:
        """B2: store 1-500 records; outcomes come from ``batch_status``. Paced to 60 batches/min per token."""
        return await self._send(self.api.batch(records))

    async def batch_status(self, batch_id: str) -> BatchStatus:
        """S2: every record of a batch with its ``status_info``."""
        return await self._send(self.api.batch_status(batch_id))

    async def personalise_v1(self, record: RecordV1Input) -> V1Result:
        """R1 (deprecated): one record as a one-record batch; ``V1FailureError`` when invalid."""
        return await self._send(self.api.realtime_v1(record))

    async def personalise_batch_v1(self, records: Iterable[RecordV1Input]) -> V1Result:
        """B1 (deprecated): 1-500 records, all or nothing."""
        return await self._send(self.api.batch_v1(records))

    async def batch_status_v1(self, batch_id: str) -> list[BatchRecordV1]:
        """S1 (deprecated): the batch's records with v1 names."""
        return await self._send(self.api.batch_status_v1(batch_id))

    async def list_feature_sets(
        self,
        *,
        department_id: str | None = None,
        operation_id: str | None = None,
        process_id: str | None = None,
        page: int = 1,
        limit: int = 50,
    ) -> FeatureSetsPage:
        """FS: one page of feature sets."""
        return await self._send(
            self.api.feature_sets(
                department_id=department_id, operation_id=operation_id, process_id=process_id, page=page, limit=limit
            )
        )

    async def iter_feature_sets(
        self,
        *,
        department_id: str | None = None,
        operation_id: str | None = None,
        process_id: str | None = None,
        limit: int = 1000,
    ) -> AsyncIterator[FeatureSet]:
        """Every feature set matching the filters (kept on every page)."""
        page = 1
        while True:
            found = await self.list_feature_sets(
                department_id=department_id, operation_id=operation_id, process_id=process_id, page=page, limit=limit
            )
            for feature_set in found.feature_sets:
                yield feature_set
            if not found.feature_sets or page >= found.pagination_info.total_page_count:
                return
            page += 1

    async def publish(self, feature_set_id: str, numbers: Sequence[str]) -> PublishResult:
        """NL: list up to 10,000 numbers in a feature set (asynchronous; see ``publish_numbers`` to wait)."""
        return await self._send(self.api.publish(feature_set_id, numbers))

    async def delist(self, feature_set_id: str, numbers: Sequence[str]) -> DelistResult:
        """ND: delist up to 10,000 numbers from a feature set (asynchronous; see ``delist_numbers``)."""
        return await self._send(self.api.delist(feature_set_id, numbers))

    async def list_numbers(
        self,
        *,
        department_id: str | None = None,
        operation_id: str | None = None,
        process_id: str | None = None,
        feature_set_id: str | None = None,
        page: int = 1,
        limit: int = 50,
    ) -> NumbersPage:
        """NN: one page of business numbers (pending, listed, delisting or failed)."""
        return await self._send(
            self.api.numbers(
                department_id=department_id,
                operation_id=operation_id,
                process_id=process_id,
                feature_set_id=feature_set_id,
                page=page,
                limit=limit,
            )
        )

    async def iter_numbers(
        self,
        *,
        department_id: str | None = None,
        operation_id: str | None = None,
        process_id: str | None = None,
        feature_set_id: str | None = None,
        limit: int = 1000,
    ) -> AsyncIterator[BusinessNumber]:
        """Every business number matching the filters (kept on every page)."""
        page = 1
        while True:
            found = await self.list_numbers(
                department_id=department_id,
                operation_id=operation_id,
                process_id=process_id,
                feature_set_id=feature_set_id,
                page=page,
                limit=limit,
            )
            for number in found.numbers:
                yield number
            if not found.numbers or page >= found.pagination_information.total_page_count:
                return
            page += 1

    async def cmb_export(self, start: int | datetime | str, end: int | datetime | str) -> DownloadLink:
        """CMB (deprecated): a 10-minute link to a CSV of Call Me Back requests in [start, end] (epoch ms or
        datetimes); ``NothingFoundError`` when there is none."""
        return await self._send(self.api.cmb_export(start, end))

    async def feedback_export(
        self,
        survey_id: str,
        from_date: int | datetime | date | str,
        to_date: int | datetime | date | str | None = None,
    ) -> DownloadLink:
        """UF (deprecated): a 10-minute link to a CSV of a survey's answers (dates: epoch ms, datetimes or days)."""
        return await self._send(self.api.feedback_export(survey_id, from_date, to_date))

    async def download(self, url: str) -> str:
        """The CSV text behind a CMB/UF link (no token needed)."""
        return await self._send(get(url, _text, kind="public"))

    # --- helpers -----------------------------------------------------------------------------------------------

    async def personalise_many(
        self,
        records: Iterable[RecordInput],
        *,
        on_invalid: InvalidPolicy = "raise",
        check_labels: bool = True,
        wait: bool = True,
        timeout: float | None = None,
        concurrency: int = 4,
        batch_size: int = BATCH_SIZE,
        poll_interval: float = 0.5,
        on_progress: ProgressHook | None = None,
    ) -> PersonaliseResult:
        """Personalise any number of records through B2 and (``wait``) return every record's final outcome.

        1. Every record is checked with the server's rules (``callerid_client.rules``), the label against the
           account's dynamic labels (fetched once; ``check_labels=False`` skips that). ``on_invalid``: ``raise``
           ``LocalValidationError`` and send nothing; ``skip`` them (outcome ``invalid_input``, never sent); or
           ``send`` them as they are (the server reports them).
        2. The valid ones go in batches of ``batch_size`` (at most 500), ``concurrency`` requests at a time, paced
           under 60 batches/min per token; each request carries an ``Idempotency-Key`` and is retried safely.
        3. ``wait``: each accepted batch is polled (S2) until every record is final, at most ``timeout`` seconds in
           all; records still queued then are ``pending``. ``on_progress`` gets a ``Progress`` after each step.
        """
        if not 1 <= batch_size <= BATCH_SIZE:
            raise ValueError(f"batch_size must be between 1 and {BATCH_SIZE}")
        labels = await self._label_ids() if check_labels and on_invalid != "send" else None
        prepared = prepare_records(records, labels, on_invalid)
        progress = Progress(total=prepared.total, invalid=len(prepared.invalid))
        outcomes: dict[int, RecordOutcome] = {}
        for outcome in prepared.invalid:
            outcomes[outcome.index] = outcome
            note(progress, outcome)

        def report() -> None:
            if on_progress is not None:
                on_progress(progress)

        report()
        batches = prepared.batches(batch_size)
        batch_ids: list[str | None] = [None] * len(batches)
        next_batch = iter(range(len(batches)))
        accepted: asyncio.Queue[int | None] = asyncio.Queue()
        deadline = None if timeout is None else time.monotonic() + timeout

        async def submit() -> None:
            for number in next_batch:
                positions, wire = batches[number]
                progress.sent += len(wire)
                report()
                try:
                    answer = await self._send(self.api.batch_of_wire(wire))
                except (AuthenticationError, PermissionDeniedError):
                    raise
                except CallerIdError as exc:
                    for position, record in zip(positions, wire, strict=True):
                        outcome = pending_outcome(position, record, None, "error", "not_sent", str(exc))
                        outcomes[position] = outcome
                        note(progress, outcome)
                    report()
                    continue
                batch_ids[number] = answer.batch_id
                progress.accepted += len(wire)
                report()
                if wait:
                    accepted.put_nowait(number)

        async def poll() -> None:
            while (number := await accepted.get()) is not None:
                batch_id, (positions, wire) = batch_ids[number], batches[number]
                assert batch_id is not None
                while deadline is None or time.monotonic() < deadline:
                    data = (await self._send(self.api.batch_status_raw(batch_id)))["data"]
                    if len(data) == len(wire) and all(_final(record) for record in data):
                        for position, record in zip(positions, data, strict=True):
                            outcomes[position] = outcome_of(position, batch_id, record)
                            note(progress, outcomes[position])
                        report()
                        break
                    await asyncio.sleep(poll_interval)

        async with asyncio.TaskGroup() as group:
            poller = group.create_task(poll()) if wait else None
            submitters = [group.create_task(submit()) for _ in range(max(1, min(concurrency, len(batches))))]
            await asyncio.gather(*submitters)
            if poller is not None:
                accepted.put_nowait(None)

        for number, (positions, wire) in enumerate(batches):
            for position, record in zip(positions, wire, strict=True):
                if position not in outcomes:
                    outcomes[position] = pending_outcome(position, record, batch_ids[number])
        ordered = [outcomes[index] for index in range(prepared.total)]
        return PersonaliseResult(ordered, [batch_id for batch_id in batch_ids if batch_id is not None])

    async def _label_ids(self) -> set[str] | None:
        """The account's dynamic label ids, or None when this key may not read them."""
        try:
            return {label.id.lower() async for label in self.iter_labels()}
        except PermissionDeniedError:
            return None

    async def publish_numbers(
        self,
        feature_set_id: str,
        numbers: Iterable[str],
        *,
        wait: bool = True,
        timeout: float | None = 600.0,
        poll_interval: float = 1.0,
        on_progress: NumbersProgressHook | None = None,
    ) -> NumbersOutcome:
        """NL for any number of numbers (10,000 per request), then (``wait``) poll NN until every accepted number is
        ``listed`` or ``failed`` (at most ``timeout`` seconds; then the last states are returned)."""
        return await self._numbers("publish", feature_set_id, numbers, wait, timeout, poll_interval, on_progress)

    async def delist_numbers(
        self,
        feature_set_id: str,
        numbers: Iterable[str],
        *,
        wait: bool = True,
        timeout: float | None = 600.0,
        poll_interval: float = 1.0,
        on_progress: NumbersProgressHook | None = None,
    ) -> NumbersOutcome:
        """ND for any number of numbers, then (``wait``) until each delisted one is ``delisted`` (gone from NN) or
        back to ``listed`` (its delisting failed)."""
        return await self._numbers("delist", feature_set_id, numbers, wait, timeout, poll_interval, on_progress)

    async def _numbers(
        self,
        action: Literal["publish", "delist"],
        feature_set_id: str,
        numbers: Iterable[str],
        wait: bool,
        timeout: float | None,
        poll_interval: float,
        on_progress: NumbersProgressHook | None,
    ) -> NumbersOutcome:
        wanted = list(numbers)
        progress = NumbersProgress(total=len(wanted))

        def report() -> None:
            if on_progress is not None:
                on_progress(progress)

        outcome = NumbersOutcome(action, [])
        for start in range(0, len(wanted), NUMBERS_PER_REQUEST):
            chunk = wanted[start : start + NUMBERS_PER_REQUEST]
            answer: PublishResult | DelistResult
            if action == "publish":
                answer = await self.publish(feature_set_id, chunk)
            else:
                answer = await self.delist(feature_set_id, chunk)
            outcome.answers.append(answer)
            progress.sent += len(chunk)
            progress.accepted += len(answer.accepted) + len(answer.processing_numbers)
            report()
        held = {number for answer in outcome.answers for number in answer.processing_numbers}
        targets = outcome.accepted
        outcome.states = dict.fromkeys(targets, "pending" if action == "publish" else "delisting")
        deadline = None if timeout is None else time.monotonic() + timeout
        while wait and targets:
            statuses = {
                number.phone_number: number.status
                async for number in self.iter_numbers(feature_set_id=feature_set_id, limit=1000)
            }
            progress.finished = 0
            for number in targets:
                state = final_state(action, number, statuses.get(number), number in held)
                if state is not None:
                    progress.finished += 1
                outcome.states[number] = state or statuses.get(number) or outcome.states[number]
            report()
            if progress.finished == len(targets) or (deadline is not None and time.monotonic() >= deadline):
                break
            await asyncio.sleep(poll_interval)
        return outcome


def _final(record: Any) -> bool:
    return isinstance(record, dict) and (record.get("status_info") or {}).get("status", "pending") != "pending"


def _text(body: Any) -> str:
    return body if isinstance(body, str) else "" if body is None else str(body)
