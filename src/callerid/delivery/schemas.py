"""Wire shapes of the app API's device endpoints (for the OpenAPI document)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from callerid.openapi import PHONE_DESCRIPTION, PHONE_PATTERN


class DeviceRegistrationRequest(BaseModel):
    phone_number: str = Field(
        description=f"the phone's own number: {PHONE_DESCRIPTION}", examples=["919234567898"], pattern=PHONE_PATTERN
    )
    platform: Literal["android", "ios"]
    app_version: str = Field(
        description="the app's version, compared as a version (1.10.0 > 1.9.0)",
        examples=["1.10.0"],
        min_length=1,
        max_length=64,
    )

    model_config = {
        "json_schema_extra": {
            "example": {"phone_number": "919234567898", "platform": "android", "app_version": "1.10.0"}
        }
    }


class DeviceRegistration(BaseModel):
    device_id: str = Field(examples=["5d0f5b8e-3f0e-4a8c-9d7e-6f1b2a3c4d5e"])
    device_token: str = Field(
        description="the device's credential: `Authorization: Bearer <device_token>` on every other app endpoint; "
        "shown only once",
        examples=["dev_Q2hhbmdlIG1lIQ..."],
    )


class CodeSentAnswer(BaseModel):
    """``device_verifier=otp``: the registration waits for the code sent to the number by SMS."""

    registration_id: str = Field(examples=["0b7d7a53-7b0e-4a47-9b8e-2f4f4c1d6a10"])
    status: Literal["code_sent"]
    expires_at: str = Field(description="when the code stops working (ISO 8601 UTC)", examples=["2026-07-10T07:09:05Z"])
    resend_after: str = Field(description="when a new code may be asked for (ISO 8601 UTC)")
    demo_code: str | None = Field(
        default=None,
        description="ONLY on a development server without an SMS gateway (SQLite, no CALLERID_SMS_WEBHOOK_URL): "
        "the code itself, for demos. Never present when an SMS gateway is configured",
        examples=["123456"],
    )


_REGISTRATION_ID = {"format": "uuid"}
_REGISTRATION_EXAMPLE = "0b7d7a53-7b0e-4a47-9b8e-2f4f4c1d6a10"


class CodeConfirmation(BaseModel):
    registration_id: str = Field(
        description="from the 202 answer of POST /app/v1/devices", json_schema_extra=_REGISTRATION_ID
    )
    code: str = Field(
        description="the 6 digits received by SMS (spaces are ignored)", examples=["123456"], pattern="^[0-9]{6}$"
    )

    model_config = {"json_schema_extra": {"example": {"registration_id": _REGISTRATION_EXAMPLE, "code": "123456"}}}


class CodeResendRequest(BaseModel):
    registration_id: str = Field(
        description="from the 202 answer of POST /app/v1/devices", json_schema_extra=_REGISTRATION_ID
    )

    model_config = {"json_schema_extra": {"example": {"registration_id": _REGISTRATION_EXAMPLE}}}


class PushedPersonalisation(BaseModel):
    """A message on ``GET /app/v1/stream`` (documented here because OpenAPI cannot describe WebSockets)."""

    type: Literal["call_personalisation"]
    record_id: str
    caller: str
    receiver: str
    label_id: str
    label_name: str
    logo_url: str
    call_reason: str | None
    starts_at: int = Field(description="epoch milliseconds")
    ends_at: int = Field(description="epoch milliseconds")
