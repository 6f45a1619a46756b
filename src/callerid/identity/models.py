"""Tables of the identity domain."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from callerid.db import Base


class SigningKey(Base):
    """An ES256 key that signs call assertions. In the database so that every process signs with it.

    The active key is the newest one not retired; a retired key stays published in the JWKS until the
    last assertion it can have signed has expired.
    """

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    private_key_pem: Mapped[str] = mapped_column(Text)
    public_jwk: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    retired_at: Mapped[datetime | None] = mapped_column(default=None, index=True)
