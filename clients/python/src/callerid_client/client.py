"""``Client``: every business endpoint (SPEC §1.4) and the helpers, blocking.

One instance is safe to share between threads: they share one token (minted once, under a lock) and the pacing
windows. The helpers that run many requests at once (``personalise_many``, ``publish_numbers``,
``delist_numbers``) run an ``AsyncClient`` with the same token on a private event loop in a worker thread, so their
progress hooks are called from that thread.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime
from types import TracebackType
from typing import Any, TypeVar

import httpx

from callerid_client._api import RecordInput, RecordV1Input
from callerid_client._base import BaseClient
from callerid_client._core import Attempts, Call, decode, get, parse_or_raise
from callerid_client.async_client import AsyncClient, _text
from callerid_client.jobs import (
    BATCH_SIZE,
    InvalidPolicy,
    NumbersOutcome,
    NumbersProgressHook,
    PersonaliseResult,
    ProgressHook,
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


class Client(BaseClient):
    """The business API, blocking. ``transport``: an ``httpx.BaseTransport`` (tests: ``httpx.MockTransport``, which
    the helpers' inner async client uses too); ``http_client``: an ``httpx.Client`` of your own."""

    def __init__(
        self,
        base_url: str,
        account_id: str,
        key_id: str,
        api_key: str,
        *,
        transport: httpx.BaseTransport | None = None,
        http_client: httpx.Client | None = None,
        **options: Any,
    ):
        super().__init__(base_url, account_id, key_id, api_key, **options)
        self._own_http = http_client is None
        self._http = http_client or httpx.Client(
            timeout=self.options.timeout,
            transport=transport,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
        )
        self._async_transport = transport if isinstance(transport, httpx.AsyncBaseTransport) else None

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._own_http:
            self._http.close()

    # --- sending -----------------------------------------------------------------------------------------------

    def _send(self, call: Call[T]) -> T:
        attempts = Attempts(call, self.options)
        url = call.path if call.path.startswith(("http://", "https://")) else self.base_url + call.path
        while True:
            token = None if call.kind in ("token", "public") else self._token()
            if token is not None:
                self._paced(token, call)
            attempts.tries += 1
            try:
                response = self._http.request(
                    call.method, url, params=call.params, content=call.body, headers=attempts.headers(token)
                )
            except httpx.TransportError as exc:
                time.sleep(attempts.on_transport_error(exc))
                continue
            body = decode(response)
            if response.is_success:
                return parse_or_raise(call, response, body)
            delay = attempts.on_response(response, body)
            if response.status_code == 401:
                self.tokens.invalidate(token)
            if delay > 0:
                time.sleep(delay)

    def _paced(self, token: str, call: Call[Any]) -> None:
        """Waits until the token's windows have room for ``call`` (SPEC §4 limits, kept on this side)."""
        while True:
            wait = self.pacer.reserve(token, call.kind)
            if wait <= 0:
                return
            time.sleep(wait)

    def _token(self) -> str:
        token = self.tokens.current()
        if token is not None:
            return token
        with self.tokens.mint_lock:
            token = self.tokens.current()
            if token is not None:  # another thread minted it meanwhile
                return token
            return self.mint_token().token

    def _in_async(self, work: Callable[[AsyncClient], Awaitable[T]]) -> T:
        """``work`` with an AsyncClient sharing this client's token and pacing, on a private loop in a thread."""

        async def main() -> T:
            async with AsyncClient(**self._same_credentials(), transport=self._async_transport) as inner:
                return await work(inner)

        with ThreadPoolExecutor(1, thread_name_prefix="callerid-client") as pool:
            return pool.submit(asyncio.run, main()).result()

    # --- endpoints ---------------------------------------------------------------------------------------------

    def mint_token(self) -> Token:
        """T: a new access token (kept and used from now on). Usually not needed: tokens are minted on demand."""
        requested = time.monotonic()
        minted = self._send(self.api.token(self.key_id, self.api_key))
        self.tokens.put(minted.token, requested)
        return minted

    def get_token(self) -> str:
        """The current access token, minted if there is none or it is about to expire."""
        return self._token()

    def list_labels(self, *, page: int = 1, limit: int = 1000) -> list[Label]:
        """L: one page of the account's dynamic labels, newest first."""
        return self._send(self.api.labels(page, limit))

    def iter_labels(self, *, limit: int = 1000) -> Iterator[Label]:
        """Every dynamic label, page after page."""
        page = 1
        while True:
            labels = self.list_labels(page=page, limit=limit)
            yield from labels
            if len(labels) < limit:
                return
            page += 1

    def personalise(self, record: RecordInput) -> RealtimeResult:
        """R2: validate one record and push it now. A valid record that could not be delivered answers
        ``status_info.status == "error"`` with the ``reason``; an invalid one raises ``RecordValidationError``."""
        return self._send(self.api.realtime(record))

    def personalise_batch(self, records: Iterable[RecordInput]) -> BatchAccepted:
        """B2: store 1-500 records; outcomes come from ``batch_status``. Paced to 60 batches/min per token."""
        return self._send(self.api.batch(records))

    def batch_status(self, batch_id: str) -> BatchStatus:
        """S2: every record of a batch with its ``status_info``."""
        return self._send(self.api.batch_status(batch_id))

    def personalise_v1(self, record: RecordV1Input) -> V1Result:
        """R1 (deprecated): one record as a one-record batch; ``V1FailureError`` when invalid."""
        return self._send(self.api.realtime_v1(record))

    def personalise_batch_v1(self, records: Iterable[RecordV1Input]) -> V1Result:
        """B1 (deprecated): 1-500 records, all or nothing."""
        return self._send(self.api.batch_v1(records))

    def batch_status_v1(self, batch_id: str) -> list[BatchRecordV1]:
        """S1 (deprecated): the batch's records with v1 names."""
        return self._send(self.api.batch_status_v1(batch_id))

    def list_feature_sets(
        self,
        *,
        department_id: str | None = None,
        operation_id: str | None = None,
        process_id: str | None = None,
        page: int = 1,
        limit: int = 50,
    ) -> FeatureSetsPage:
        """FS: one page of feature sets."""
        return self._send(
            self.api.feature_sets(
                department_id=department_id, operation_id=operation_id, process_id=process_id, page=page, limit=limit
            )
        )

    def iter_feature_sets(
        self,
        *,
        department_id: str | None = None,
        operation_id: str | None = None,
        process_id: str | None = None,
        limit: int = 1000,
    ) -> Iterator[FeatureSet]:
        """Every feature set matching the filters (kept on every page)."""
        page = 1
        while True:
            found = self.list_feature_sets(
                department_id=department_id, operation_id=operation_id, process_id=process_id, page=page, limit=limit
            )
            yield from found.feature_sets
            if not found.feature_sets or page >= found.pagination_info.total_page_count:
                return
            page += 1

    def publish(self, feature_set_id: str, numbers: Sequence[str]) -> PublishResult:
        """NL: list up to 10,000 numbers in a feature set (asynchronous; see ``publish_numbers`` to wait)."""
        return self._send(self.api.publish(feature_set_id, numbers))

    def delist(self, feature_set_id: str, numbers: Sequence[str]) -> DelistResult:
        """ND: delist up to 10,000 numbers from a feature set (asynchronous; see ``delist_numbers``)."""
        return self._send(self.api.delist(feature_set_id, numbers))

    def list_numbers(
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
        return self._send(
            self.api.numbers(
                department_id=department_id,
                operation_id=operation_id,
                process_id=process_id,
                feature_set_id=feature_set_id,
                page=page,
                limit=limit,
            )
        )

    def iter_numbers(
        self,
        *,
        department_id: str | None = None,
        operation_id: str | None = None,
        process_id: str | None = None,
        feature_set_id: str | None = None,
        limit: int = 1000,
    ) -> Iterator[BusinessNumber]:
        """Every business number matching the filters (kept on every page)."""
        page = 1
        while True:
            found = self.list_numbers(
                department_id=department_id,
                operation_id=operation_id,
                process_id=process_id,
                feature_set_id=feature_set_id,
                page=page,
                limit=limit,
            )
            yield from found.numbers
            if not found.numbers or page >= found.pagination_information.total_page_count:
                return
            page += 1

    def cmb_export(self, start: int | datetime | str, end: int | datetime | str) -> DownloadLink:
        """CMB (deprecated): a 10-minute link to a CSV of Call Me Back requests in [start, end] (epoch ms or
        datetimes); ``NothingFoundError`` when there is none."""
        return self._send(self.api.cmb_export(start, end))

    def feedback_export(
        self,
        survey_id: str,
        from_date: int | datetime | date | str,
        to_date: int | datetime | date | str | None = None,
    ) -> DownloadLink:
        """UF (deprecated): a 10-minute link to a CSV of a survey's answers (dates: epoch ms, datetimes or days)."""
        return self._send(self.api.feedback_export(survey_id, from_date, to_date))

    def download(self, url: str) -> str:
        """The CSV text behind a CMB/UF link (no token needed)."""
        return self._send(get(url, _text, kind="public"))

    # --- helpers -----------------------------------------------------------------------------------------------

    def personalise_many(
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
        """See ``AsyncClient.personalise_many``: validate, send in batches of 500 under the batch rate, and return
        every record's final outcome (``on_progress`` is called from a worker thread)."""
        records = list(records)
        return self._in_async(
            lambda inner: inner.personalise_many(
                records,
                on_invalid=on_invalid,
                check_labels=check_labels,
                wait=wait,
                timeout=timeout,
                concurrency=concurrency,
                batch_size=batch_size,
                poll_interval=poll_interval,
                on_progress=on_progress,
            )
        )

    def publish_numbers(
        self,
        feature_set_id: str,
        numbers: Iterable[str],
        *,
        wait: bool = True,
        timeout: float | None = 600.0,
        poll_interval: float = 1.0,
        on_progress: NumbersProgressHook | None = None,
    ) -> NumbersOutcome:
        """See ``AsyncClient.publish_numbers``: list, then wait until every number is listed or failed."""
        numbers = list(numbers)
        return self._in_async(
            lambda inner: inner.publish_numbers(
                feature_set_id,
                numbers,
                wait=wait,
                timeout=timeout,
                poll_interval=poll_interval,
                on_progress=on_progress,
            )
        )

    def delist_numbers(
        self,
        feature_set_id: str,
        numbers: Iterable[str],
        *,
        wait: bool = True,
        timeout: float | None = 600.0,
        poll_interval: float = 1.0,
        on_progress: NumbersProgressHook | None = None,
    ) -> NumbersOutcome:
        """See ``AsyncClient.delist_numbers``: delist, then wait until every number is delisted (or back to listed)."""
        numbers = list(numbers)
        return self._in_async(
            lambda inner: inner.delist_numbers(
                feature_set_id,
                numbers,
                wait=wait,
                timeout=timeout,
                poll_interval=poll_interval,
                on_progress=on_progress,
            )
        )
