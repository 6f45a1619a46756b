"""Tables of the engagement domain: Call Me Back configs and requests, surveys and answers, export files.

Requests and answers keep a snapshot of what was emitted (feature-set name, config name, formatted date and
slot), so that the webhook payload and the later CSV export say the same thing even after a rename.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from callerid.db import Base

# Export kinds (SPEC §5.10, §5.11).
EXPORT_CMB = "cmb"
EXPORT_FEEDBACK = "feedback"

# Survey types (SPEC §10.5): one rating question made for you, or your own ordered questions.
CALL_RATING = "call_rating"
QUESTIONS = "questions"
SURVEY_TYPES = (CALL_RATING, QUESTIONS)
# A live survey is shown to phones and takes answers; a paused one does neither.
LIVE = "live"
PAUSED = "paused"
SURVEY_STATUSES = (LIVE, PAUSED)


class CmbConfig(Base):
    """The Call Me Back configuration of one feature set (SPEC §10.4)."""

    __tablename__ = "cmb_configs"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("client_accounts.id", ondelete="CASCADE"), index=True)
    feature_set_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("feature_sets.id", ondelete="CASCADE"), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    slot_picker: Mapped[bool] = mapped_column(default=False)
    # [{"weekday": "Saturday", "start": "12:30", "end": "13:00"}, ...] in the account timezone.
    windows: Mapped[list[Any]]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class CmbRequest(Base):
    """One call-back request from an app user; its fields are the ``cmb_payload`` values (SPEC §9.3)."""

    __tablename__ = "cmb_requests"
    __table_args__ = (
        Index("ix_cmb_requests_account_requested", "account_id", "requested_at"),
        Index("ix_cmb_requests_requested_at", "requested_at"),  # retention, oldest first
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("client_accounts.id", ondelete="CASCADE"))
    feature_set_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("feature_sets.id", ondelete="SET NULL"), default=None, index=True
    )
    business_number: Mapped[str] = mapped_column(String(15))
    feature_set_name: Mapped[str] = mapped_column(String(100))
    # The device's number, or "Phone number not available".
    client_number: Mapped[str] = mapped_column(String(32))
    alternate_number: Mapped[str] = mapped_column(String(15), default="")
    requested_at: Mapped[datetime]
    requested_date: Mapped[str] = mapped_column(String(10))
    requested_slot: Mapped[str] = mapped_column(String(10))
    preferred_from_time: Mapped[datetime | None] = mapped_column(default=None)
    preferred_to_time: Mapped[datetime | None] = mapped_column(default=None)
    is_interested: Mapped[bool]
    cmb_config_name: Mapped[str] = mapped_column(String(100))


class Survey(Base):
    """The survey of one feature set (SPEC §10.5); ``id`` is the ``{surveyId}`` of UF."""

    __tablename__ = "surveys"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("client_accounts.id", ondelete="CASCADE"), index=True)
    feature_set_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("feature_sets.id", ondelete="CASCADE"), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    # When the app shows it: "answered", "missed" (missed or rejected) or "any".
    trigger: Mapped[str] = mapped_column(String(16))
    survey_type: Mapped[str] = mapped_column(String(16), default=QUESTIONS)
    status: Mapped[str] = mapped_column(String(16), default=LIVE)
    # Ordered questions: [{"text": ..., "kind": "rating" | "choice" | "text", "choices": [...] (choice only)}]
    # (engagement.questions reads and writes them).
    questions: Mapped[list[Any]]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class SurveyResponse(Base):
    """One app user's answers to a survey; ``answers`` in survey order (the ``user_responses`` of §9.3)."""

    __tablename__ = "survey_responses"
    __table_args__ = (
        Index("ix_survey_responses_survey_requested", "survey_id", "requested_at"),
        Index("ix_survey_responses_requested_at", "requested_at"),  # retention, oldest first
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("client_accounts.id", ondelete="CASCADE"), index=True)
    survey_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("surveys.id", ondelete="CASCADE"))
    survey_name: Mapped[str] = mapped_column(String(100))
    business_number: Mapped[str] = mapped_column(String(15))
    feature_set_name: Mapped[str] = mapped_column(String(100))
    client_number: Mapped[str] = mapped_column(String(32))
    requested_at: Mapped[datetime]
    answers: Mapped[list[Any]]


class ExportFile(Base):
    """A download link handed out by CMB / UF (SPEC §5.10): only the token's hash is stored.

    The CSV is written when the link is downloaded, from ``params`` (a fixed time range that ends no later
    than the issue time; requests and answers are never changed afterwards), so nothing large is stored.
    """

    __tablename__ = "export_files"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("client_accounts.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    params: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
