"""Wire shapes of the caller-ID lookup and the JWKS (for the OpenAPI document)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class VerifiedCaller(BaseModel):
    verified: Literal[True]
    caller: str = Field(examples=["911234567898"])
    name: str = Field(description="the record's label name", examples=["Flower rasm"])
    logo_url: str = Field(examples=["https://callerid.example.com/logos/06930f35-...-1751871235271177747.png"])
    call_reason: str | None = Field(examples=["Flower Delivery"])
    label_id: str = Field(examples=["c6d86658-008d-4c08-98fb-2bf2649d59a5"])
    starts_at: int | None = Field(description="window start, epoch milliseconds; null for a listed business number")
    ends_at: int | None = Field(description="window end, epoch milliseconds; null for a listed business number")
    assertion: str = Field(
        description="a PASSporT (JWT, ES256, `ppt: rcd`) signed by this server: orig/dest/iat/exp, "
        "rcd {nam, icn} and crn; verify it with the keys at /.well-known/jwks.json"
    )


class UnverifiedCaller(BaseModel):
    verified: Literal[False]


class Jwk(BaseModel):
    kty: Literal["EC"]
    crv: Literal["P-256"]
    x: str
    y: str
    use: Literal["sig"]
    alg: Literal["ES256"]
    kid: str


class Jwks(BaseModel):
    keys: list[Jwk]
