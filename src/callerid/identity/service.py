"""Who is calling: the verified identity a phone shows for an incoming call (SPEC §6), with a signed assertion."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from callerid.analytics.blocked import record_blocked_attempt
from callerid.identity.signer import passport_claims
from callerid.labels.service import logo_url
from callerid.numbers.service import listed_identity
from callerid.personalisation.service import active_identity

if TYPE_CHECKING:
    from callerid.runtime import Runtime


@dataclass(frozen=True)
class CallerIdentity:
    caller: str
    name: str
    logo_url: str
    call_reason: str | None
    label_id: str
    starts_at: int | None  # epoch ms; None for a listed business number (no window)
    ends_at: int | None  # epoch ms; None for a listed business number
    assertion: str

    def to_json(self) -> dict[str, Any]:
        return {
            "verified": True,
            "caller": self.caller,
            "name": self.name,
            "logo_url": self.logo_url,
            "call_reason": self.call_reason,
            "label_id": self.label_id,
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "assertion": self.assertion,
        }


NOT_VERIFIED: dict[str, Any] = {"verified": False}


async def lookup(runtime: Runtime, caller: str, receiver: str, at: datetime) -> CallerIdentity | None:
    """The identity ``caller`` shows to ``receiver`` at ``at``, or None outside every window.

    Sources, in order (first match wins): the latest call personalisation record whose window holds ``at``;
    then, for a business number listed in a feature set, the set's static label and call reason, unless the set has
    secure branding (issue 13): then only a record for this receiver shows it, and a lookup without one is answered
    as unverified and recorded as a blocked attempt (a possible spoofed call). The flag comes with the listing's
    one read, so a set without it costs nothing more.
    """
    settings = runtime.settings
    found: Any = await active_identity(runtime.db, caller, receiver, at)
    starts_at: int | None = None
    ends_at: int | None = None
    if found is not None:
        name, starts_at, ends_at = found.name, found.starts_at, found.ends_at
    else:
        found = await listed_identity(runtime.db, caller)
        if found is None:
            return None
        if found.secure_branding:  # no record pre-announced this call to this receiver
            await record_blocked_attempt(runtime.db, found, caller, at)
            return None
        name = found.label_name
    url = logo_url(settings, found.logo_key)
    claims = passport_claims(
        settings,
        caller=caller,
        receiver=receiver,
        name=name,
        logo_url=url,
        call_reason=found.call_reason,
        iat=int(at.timestamp()),
    )
    return CallerIdentity(
        caller=caller,
        name=name,
        logo_url=url,
        call_reason=found.call_reason,
        label_id=str(found.label_id),
        starts_at=starts_at,
        ends_at=ends_at,
        assertion=await runtime.signer.sign(claims, at),
    )
