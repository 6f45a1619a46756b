"""Every business endpoint of SPEC §1.4 as a ``Call``: path, parameters, body and how to read the answer."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any
from urllib.parse import quote

from pydantic import TypeAdapter

from callerid_client._core import Call, ClientOptions, get, post
from callerid_client.models import (
    BatchAccepted,
    BatchRecordV1,
    BatchStatus,
    CallRecord,
    CallRecordV1,
    DelistResult,
    DownloadLink,
    FeatureSetsPage,
    Label,
    NumbersPage,
    PublishResult,
    RealtimeResult,
    Token,
    V1Result,
    epoch_ms,
)

RecordInput = CallRecord | Mapping[str, Any]
RecordV1Input = CallRecordV1 | Mapping[str, Any]

_LABELS = TypeAdapter(list[Label])
_S1 = TypeAdapter(list[BatchRecordV1])


def _id(value: object) -> str:
    return quote(str(value), safe="")


def wire_record(record: RecordInput | RecordV1Input) -> dict[str, Any]:
    """A record as sent: models are dumped with their wire names; mappings are sent as they are (so that the
    server, not pydantic, judges them), datetimes turned into epoch milliseconds."""
    if isinstance(record, CallRecord | CallRecordV1):
        return record.wire()
    if isinstance(record.get("starts_at"), datetime) or isinstance(record.get("ends_at"), datetime):
        return {key: epoch_ms(value) if isinstance(value, datetime) else value for key, value in record.items()}
    return record if isinstance(record, dict) else dict(record)  # sent as it is: never changed here


class Api:
    """The calls of one client account."""

    def __init__(self, account_id: str, options: ClientOptions):
        self.account = _id(account_id)
        self.options = options

    # T
    def token(self, key_id: str, api_key: str) -> Call[Token]:
        return post(
            f"/clients/{self.account}/token",
            {"key_id": key_id, "api_key": api_key},
            Token.model_validate,
            self.options,
            kind="token",
        )

    # L
    def labels(self, page: int = 1, limit: int = 1000) -> Call[list[Label]]:
        return get(f"/clients/{self.account}/labels", _LABELS.validate_python, {"page": page, "limit": limit})

    # R2, B2, S2
    def realtime(self, record: RecordInput) -> Call[RealtimeResult]:
        return post(
            f"/v2/clients/{self.account}/dynamic_call_record",
            wire_record(record),
            RealtimeResult.model_validate,
            self.options,
        )

    def batch(self, records: Iterable[RecordInput]) -> Call[BatchAccepted]:
        return self.batch_of_wire([wire_record(record) for record in records])

    def batch_of_wire(self, records: Sequence[Mapping[str, Any]]) -> Call[BatchAccepted]:
        return post(
            f"/v2/clients/{self.account}/dynamic_call_records",
            {"call_records": records},
            BatchAccepted.model_validate,
            self.options,
            kind="batch",
        )

    def batch_status_raw(self, batch_id: str) -> Call[Any]:
        """S2 as plain JSON (the helpers read thousands of records: no models)."""
        return get(f"/v2/clients/{self.account}/dynamic_call_records", _json_object, {"batchId": batch_id})

    def batch_status(self, batch_id: str) -> Call[BatchStatus]:
        return get(
            f"/v2/clients/{self.account}/dynamic_call_records", BatchStatus.model_validate, {"batchId": batch_id}
        )

    # R1, B1, S1 (deprecated)
    def realtime_v1(self, record: RecordV1Input) -> Call[V1Result]:
        return post(
            f"/clients/{self.account}/dynamic_call_record", wire_record(record), V1Result.model_validate, self.options
        )

    def batch_v1(self, records: Iterable[RecordV1Input]) -> Call[V1Result]:
        return post(
            f"/clients/{self.account}/dynamic_call_records",
            {"call_records": [wire_record(record) for record in records]},
            V1Result.model_validate,
            self.options,
        )

    def batch_status_v1(self, batch_id: str) -> Call[list[BatchRecordV1]]:
        return get(f"/clients/{self.account}/dynamic_call_records", _S1.validate_python, {"batchId": batch_id})

    # FS, NL, ND, NN
    def feature_sets(
        self,
        *,
        department_id: str | None = None,
        operation_id: str | None = None,
        process_id: str | None = None,
        page: int = 1,
        limit: int = 50,
    ) -> Call[FeatureSetsPage]:
        params = {
            "department_id": department_id,
            "operation_id": operation_id,
            "process_id": process_id,
            "page": page,
            "limit": limit,
        }
        return get(f"/clients/{self.account}/number_management/feature_sets", FeatureSetsPage.model_validate, params)

    def publish(self, feature_set_id: str, numbers: Sequence[str]) -> Call[PublishResult]:
        return post(
            f"/clients/{self.account}/number_management/feature_sets/{_id(feature_set_id)}/numbers/publish",
            {"phone_numbers": list(numbers)},
            PublishResult.model_validate,
            self.options,
        )

    def delist(self, feature_set_id: str, numbers: Sequence[str]) -> Call[DelistResult]:
        return post(
            f"/clients/{self.account}/number_management/feature_sets/{_id(feature_set_id)}/numbers/delist",
            {"phone_numbers": list(numbers)},
            DelistResult.model_validate,
            self.options,
        )

    def numbers(
        self,
        *,
        department_id: str | None = None,
        operation_id: str | None = None,
        process_id: str | None = None,
        feature_set_id: str | None = None,
        page: int = 1,
        limit: int = 50,
    ) -> Call[NumbersPage]:
        params = {
            "department_id": department_id,
            "operation_id": operation_id,
            "process_id": process_id,
            "feature_set_id": feature_set_id,
            "page": page,
            "limit": limit,
        }
        return get(f"/clients/{self.account}/number_management/numbers", NumbersPage.model_validate, params)

    # CMB, UF (deprecated)
    def cmb_export(self, start: int | datetime | str, end: int | datetime | str) -> Call[DownloadLink]:
        params = {"from": _epoch_ms_text(start), "to": _epoch_ms_text(end)}
        return get(f"/clients/{self.account}/openapi/callback-logs/summary", DownloadLink.model_validate, params)

    def feedback_export(
        self, survey_id: str, from_date: int | datetime | date | str, to_date: int | datetime | date | str | None
    ) -> Call[DownloadLink]:
        params = {"from_date": _day_or_ms(from_date), "to_date": None if to_date is None else _day_or_ms(to_date)}
        return get(
            f"/clients/{self.account}/openapi/feedback_stack/{_id(survey_id)}/export_report",
            DownloadLink.model_validate,
            params,
        )


def _json_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise ValueError("not a batch status")
    return body


def _epoch_ms_text(value: int | datetime | str) -> str:
    if isinstance(value, datetime):
        return str(epoch_ms(value))
    return str(value)


def _day_or_ms(value: int | datetime | date | str) -> str:
    if isinstance(value, datetime):
        return str(epoch_ms(value))
    if isinstance(value, date):
        return value.isoformat()
    return str(value)
