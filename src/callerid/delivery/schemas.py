"""Wire shapes of the app API's device endpoints (for the OpenAPI document)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class DeviceRegistrationRequest(BaseModel):
    phone_number: str = Field(description="the phone's own number (SPEC §2.5 form)", examples=["919234567898"])
    platform: Literal["android", "ios"]
    app_version: str = Field(
        description="the app's version, compared as a version (1.10.0 > 1.9.0)", examples=["1.10.0"]
    )


class DeviceRegistration(BaseModel):
    device_id: str = Field(examples=["5d0f5b8e-3f0e-4a8c-9d7e-6f1b2a3c4d5e"])
    device_token: str = Field(
        description="the device's credential: `Authorization: Bearer <device_token>` on every other app endpoint; "
        "shown only once",
        examples=["dev_Q2hhbmdlIG1lIQ..."],
    )


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
