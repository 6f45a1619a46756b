"""Tables of the delivery domain."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from callerid.db import Base


class Device(Base):
    """The app installation registered for one phone number (registering again replaces it)."""

    __tablename__ = "devices"
    # Retention: devices not seen for longest first; never seen since registering by created_at.
    __table_args__ = (Index("ix_devices_last_seen_created", "last_seen_at", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    phone_number: Mapped[str] = mapped_column(String(20), unique=True)
    platform: Mapped[str] = mapped_column(String(16))
    app_version: Mapped[str] = mapped_column(String(64))
    # sha256 of the device token; the token itself is only ever shown once, at registration.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    # Last push-stream connection, written at most once a day (callerid.delivery.retention); None: not since
    # registering (created_at).
    last_seen_at: Mapped[datetime | None] = mapped_column(default=None)


class PendingRegistration(Base):
    """A registration waiting for its SMS code (``device_verifier=otp``): no device exists until it is confirmed.

    Only the code's hash is kept, bound to this registration (a code is good for the registration it was sent for).
    The row is deleted when the code is confirmed, when the tries run out, and once it has expired.
    """

    __tablename__ = "device_registrations"
    __table_args__ = (Index("ix_device_registrations_expires_at", "expires_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    phone_number: Mapped[str] = mapped_column(String(20), index=True)
    platform: Mapped[str] = mapped_column(String(16))
    app_version: Mapped[str] = mapped_column(String(64))
    code_hash: Mapped[str] = mapped_column(String(64))
    code_sent_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    tries: Mapped[int] = mapped_column(default=0)
    codes_sent: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime]


class AppCredential(Base):
    """An app vendor's server credential (``device_verifier=trusted_backend``): it vouches for phone numbers.

    Issued and revoked by the operator (``callerid app-credentials``); only its SHA-256 is stored.
    """

    __tablename__ = "app_credentials"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class SmsOutbox(Base):
    """The development SMS sink: registration codes "sent" when no SMS gateway is configured (SQLite only).

    Read with ``callerid sms outbox``; never written when ``CALLERID_SMS_WEBHOOK_URL`` is set.
    """

    __tablename__ = "sms_outbox"
    __table_args__ = (Index("ix_sms_outbox_created_at", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    phone_number: Mapped[str] = mapped_column(String(20))
    message: Mapped[str] = mapped_column(Text)
    code: Mapped[str] = mapped_column(String(16))
    registration_id: Mapped[uuid.UUID]
    created_at: Mapped[datetime]
