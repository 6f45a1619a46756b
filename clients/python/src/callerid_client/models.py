"""pydantic models of the business API's requests and answers (SPEC §3-§5) and of the webhook payloads (§9.3).

Answers keep unknown fields (``extra="allow"``): a newer server may add fields, never remove them.
Time values stay as the wire has them (ISO-8601 strings in REST, epoch-second strings in webhooks); helpers convert.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "BatchAccepted",
    "BatchRecord",
    "BatchRecordV1",
    "BatchStatus",
    "BusinessNumber",
    "CallRecord",
    "CallRecordV1",
    "CmbEvent",
    "CmbPayload",
    "DelistResult",
    "DownloadLink",
    "FeatureSet",
    "FeatureSetsPage",
    "Label",
    "NumbersPage",
    "NumbersPagination",
    "PaginationInfo",
    "PublishResult",
    "RealtimeResult",
    "StatusInfo",
    "SurveyPayload",
    "Token",
    "UserFeedbackEvent",
    "UserResponse",
    "V1Result",
    "WebhookEvent",
    "epoch_ms",
]

_BATCH_ID = re.compile(r"BatchID: ([0-9a-fA-F-]{36})")
_ONE_MS = timedelta(milliseconds=1)


def epoch_ms(value: datetime) -> int:
    """Epoch milliseconds of an aware datetime (naive ones are taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - datetime(1970, 1, 1, tzinfo=UTC)) // _ONE_MS


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @field_validator("starts_at", "ends_at", mode="before", check_fields=False)
    @classmethod
    def _datetimes_to_ms(cls, value: Any) -> Any:
        return epoch_ms(value) if isinstance(value, datetime) else value

    @field_validator("label_id", mode="before", check_fields=False)
    @classmethod
    def _uuid_to_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, uuid.UUID) else value


class CallRecord(_Request):
    """One v2 call record (R2, B2). ``starts_at``/``ends_at`` are epoch milliseconds (datetimes are converted);
    the v1 names (``caller``, ``receiver``, ``label_name``, ``call_reason``) are accepted on input."""

    label_id: str
    caller_number: str = Field(validation_alias=AliasChoices("caller_number", "caller"))
    receiver_number: str = Field(validation_alias=AliasChoices("receiver_number", "receiver"))
    starts_at: int
    ends_at: int
    dynamic_label_name: str | None = Field(
        default=None, validation_alias=AliasChoices("dynamic_label_name", "label_name")
    )
    dynamic_call_reason: str | None = Field(
        default=None, validation_alias=AliasChoices("dynamic_call_reason", "call_reason")
    )

    def wire(self) -> dict[str, Any]:
        """The JSON object sent (absent optional fields left out)."""
        return self.model_dump(exclude_none=True)


class CallRecordV1(_Request):
    """One v1 call record (R1, B1; deprecated)."""

    label_id: str
    caller: str
    receiver: str
    starts_at: int
    ends_at: int
    label_name: str | None = None
    call_reason: str | None = None

    def wire(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class _Answer(BaseModel):
    model_config = ConfigDict(extra="allow")


class Token(_Answer):
    """T's answer: a 64-character bearer token valid 60 minutes from ``created_at``."""

    token: str
    created_at: str


class Label(_Answer):
    """A dynamic label (L)."""

    id: str
    name: str
    logo_url: str
    category: int | None = None
    sub_category: int | None = None
    created_by_email: str = ""
    created_at: str = ""
    label_type: str = "dynamic"


class StatusInfo(_Answer):
    """``status_info`` of R2 and of each S2 record: ``pending``, ``success`` or ``error`` (with ``reason`` such as
    ``invalid_input``, ``not_app_user``, ``os_not_supported``, ``app_version_not_supported``, ``failed_to_push``;
    ``field`` for ``invalid_input``)."""

    status: Literal["pending", "success", "error"] | str
    message: str | None = None
    reason: str | None = None
    field: str | None = None

    @property
    def final(self) -> bool:
        return self.status != "pending"

    @property
    def outcome(self) -> str:
        """``success``, ``pending`` or the error's reason (one word for summaries)."""
        if self.status == "error":
            return self.reason or "error"
        return self.status


class RealtimeResult(_Answer):
    """R2's 200 answer: delivered (``status_info.status == "success"``) or valid but not delivered (``error`` with
    the delivery ``reason``)."""

    status_info: StatusInfo

    @property
    def delivered(self) -> bool:
        return self.status_info.status == "success"


class BatchAccepted(_Answer):
    """B2's answer."""

    batch_id: str


class BatchRecord(_Answer):
    """A record of S2 (v2 names). Values are as stored: normalised, or as sent when the record was invalid."""

    id: str
    caller_number: Any = None
    receiver_number: Any = None
    label_id: Any = None
    dynamic_label_name: Any = None
    dynamic_call_reason: Any = None
    starts_at: Any = None
    ends_at: Any = None
    status_info: StatusInfo
    created_at: str = ""


class BatchStatus(_Answer):
    """S2's answer: every record of the batch in submission order (``data`` empty for an unknown batch)."""

    client_account_id: str
    batch_id: str
    data: list[BatchRecord]

    @property
    def finished(self) -> bool:
        """True when every record has a final status (and there is at least one record)."""
        return bool(self.data) and all(record.status_info.final for record in self.data)


class V1Result(_Answer):
    """R1/B1's success answer ``{"status": "success", "message": "Records Uploaded Successfully. BatchID: ..."}``."""

    status: str
    message: str

    @property
    def batch_id(self) -> str | None:
        found = _BATCH_ID.search(self.message)
        return found.group(1).lower() if found else None


class BatchRecordV1(_Answer):
    """A record of S1 (v1 names); ``status`` is ``pending``, ``success`` or ``failure`` (+ ``failure_reason``)."""

    id: str
    client_account_id: str
    batch_id: str | None = None
    caller: Any = None
    receiver: Any = None
    label_id: Any = None
    label_name: Any = None
    call_reason: Any = None
    starts_at: Any = None
    ends_at: Any = None
    status: str
    failure_reason: str | None = None
    created_at: str = ""


class FeatureSet(_Answer):
    """A feature set (FS)."""

    id: str
    name: str
    description: str = ""
    status: str = ""
    process_id: str | None = None
    client_account_id: str = ""
    label_id: str | None = None
    call_reason_id: str | None = None
    video_caller_id: Any = None
    business_profile_id: Any = None
    call_me_back: bool = False
    survey: bool = False
    department_id: str | None = None
    department_name: str = ""
    operation_id: str | None = None
    calling_operation_id: str | None = None
    calling_operation_name: str = ""
    process_name: str = ""
    sub_process_name: str = ""
    created_at: str = ""
    updated_at: str = ""


class PaginationInfo(_Answer):
    total_page_count: int
    current_page: int
    page_limit: int


class FeatureSetsPage(_Answer):
    feature_sets: list[FeatureSet]
    pagination_info: PaginationInfo


class BusinessNumber(_Answer):
    """A business number (NN): ``status`` ``pending``, ``listed``, ``delisting`` or ``failed``."""

    phone_number: str
    phone_type: str = ""
    status: str
    client_account_id: str = ""
    created_by_email: str = ""
    department: str = ""
    operation: str = ""
    process: str = ""
    subprocess: str = ""
    feature_set_name: str = ""
    call_me_back: str = ""
    created_at: str = ""
    updated_at: str = ""
    label_name: str = ""
    failure_reason: str | None = None


class NumbersPagination(_Answer):
    total_page_count: int


class NumbersPage(_Answer):
    numbers: list[BusinessNumber]
    pagination_information: NumbersPagination


class _Classification(_Answer):
    client_account_id: str
    phone_type: str = ""
    new_numbers: list[str] = []
    other_phonetype_numbers: list[str] = []
    existing_numbers: list[str] = []
    others_numbers: list[str] = []
    invalid_numbers: list[str] = []
    other_feature_set_numbers: list[str] = []
    processing_numbers: list[str] = []
    status: str

    def buckets(self) -> dict[str, list[str]]:
        """Every ``*_numbers`` list of the answer by name."""
        return {
            name: list(value)
            for name, value in self.model_dump().items()
            if name.endswith("_numbers") and isinstance(value, list)
        }


class PublishResult(_Classification):
    """NL's answer: each distinct number in one bucket (SPEC §7.4); ``status`` ``pending`` if any was accepted."""

    created_by_email: str = ""
    migrated_numbers: list[str] = []
    delisted_numbers: list[str] = []
    updated_numbers: list[str] = []

    @property
    def accepted(self) -> list[str]:
        """Numbers that will be listed: new, migrated, re-listed and retried."""
        return [*self.new_numbers, *self.migrated_numbers, *self.delisted_numbers, *self.updated_numbers]


class DelistResult(_Classification):
    """ND's answer: ``existing_numbers`` are being delisted; ``new_numbers`` had nothing to delist."""

    @property
    def accepted(self) -> list[str]:
        return list(self.existing_numbers)


class DownloadLink(_Answer):
    """CMB/UF's answer: a CSV download link valid 10 minutes."""

    url: str


# --- webhooks (SPEC §9.3) ----------------------------------------------------------------------------------------


class CmbPayload(_Answer):
    """A Call Me Back request. Times are epoch-second strings; ``client_number`` may be
    ``Phone number not available``; ``requested_date``/``requested_slot`` are ``NA`` when not interested."""

    business_number: str
    feature_set: str
    client_number: str
    requested_at: str
    requested_date: str
    requested_slot: str
    preferred_from_time: str | None = None
    preferred_to_time: str | None = None
    is_interested: bool
    alternate_number: str = ""
    cmb_config_name: str | None = None


class UserResponse(_Answer):
    question: str
    response: str


class SurveyPayload(_Answer):
    """A survey answer: answered questions in survey order, responses as strings."""

    name: str
    business_number: str
    feature_set: str
    client_number: str
    requested_at: str
    user_responses: list[UserResponse]


class _Event(_Answer):
    event_id: str
    client_account_id: str
    created_at: str

    @property
    def created(self) -> datetime:
        return datetime.fromtimestamp(int(self.created_at), UTC)


class CmbEvent(_Event):
    event_type: Literal["cmb"]
    cmb_payload: CmbPayload


class UserFeedbackEvent(_Event):
    event_type: Literal["user_feedback"]
    survey_payload: SurveyPayload


WebhookEvent = Annotated[CmbEvent | UserFeedbackEvent, Field(discriminator="event_type")]
