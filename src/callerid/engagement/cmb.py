"""Call Me Back: configurations per feature set and the requests phones send (SPEC §10.4).

A request is checked against the business number's listed feature set, stored, and turned into one webhook event
per subscribed webhook in the same transaction (SPEC §9.2), so that the stored data, the events and their queued
deliveries commit together. Data is kept when no webhook is subscribed: the exports read it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from callerid import clock
from callerid.config import Settings
from callerid.delivery.service import DeviceInfo
from callerid.engagement.checks import (
    DEFAULT_CMB_CONFIG_NAME,
    MAX_SLOT,
    NA,
    NOT_AVAILABLE,
    EngagementError,
    _account_zone,
    _check_displayable,
    _feature_enabled,
    _feature_set_in_account,
    _listed_for_app,
)
from callerid.engagement.models import (
    CmbConfig,
    CmbRequest,
)
from callerid.engagement.schemas import (
    CmbSubmission,
    cmb_payload,
)
from callerid.engagement.windows import DEFAULT_WINDOWS, next_window, parse_window
from callerid.failures import Conflict, InvalidInput
from callerid.phone import normalise_phone
from callerid.webhooks.service import emit_event

# --- Call Me Back configuration ------------------------------------------------------------------------------


@dataclass(frozen=True)
class EffectiveCmbConfig:
    name: str
    slot_picker: bool
    windows: list[dict[str, str]]


DEFAULT_CMB_CONFIG = EffectiveCmbConfig(DEFAULT_CMB_CONFIG_NAME, False, DEFAULT_WINDOWS)


def parse_windows(texts: Sequence[str]) -> list[dict[str, str]]:
    """CLI/console window texts (``Saturday 12:30-13:00``), checked; EngagementError names the bad one."""
    try:
        return [parse_window(text) for text in texts]
    except ValueError as exc:
        raise EngagementError(str(exc)) from None


async def set_cmb_config(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    feature_set_id: uuid.UUID,
    name: str | None = None,
    slot_picker: bool | None = None,
    windows: list[dict[str, str]] | None = None,
) -> CmbConfig:
    """Create or change the Call Me Back config of a feature set that has Call Me Back enabled.

    Omitted values keep their current value (on creation: name "Call Me Back", no slot picker, Monday-Saturday
    30-minute windows 10:00-18:00).
    """
    feature_set = await _feature_set_in_account(session, account_id, feature_set_id)
    if not feature_set.call_me_back:
        raise EngagementError(f"call me back is not enabled on feature set {feature_set_id}")
    if name is not None:
        name = name.strip()
        if not 1 <= len(name) <= 100:
            raise EngagementError("cmb config name must be 1-100 characters")
        _check_displayable(name, "cmb config name")
    if windows is not None and not windows:
        raise EngagementError("at least one callback window is needed")
    now = clock.now()
    config = (
        await session.execute(select(CmbConfig).where(CmbConfig.feature_set_id == feature_set_id))
    ).scalar_one_or_none()
    if config is None:
        config = CmbConfig(
            id=uuid.uuid4(),
            account_id=account_id,
            feature_set_id=feature_set_id,
            name=name or DEFAULT_CMB_CONFIG_NAME,
            slot_picker=bool(slot_picker),
            windows=windows or list(DEFAULT_WINDOWS),
            created_at=now,
            updated_at=now,
        )
        session.add(config)
    else:
        if name is not None:
            config.name = name
        if slot_picker is not None:
            config.slot_picker = slot_picker
        if windows is not None:
            config.windows = windows
        config.updated_at = now
    await session.flush()
    return config


async def cmb_config_of(session: AsyncSession, account_id: uuid.UUID, feature_set_id: uuid.UUID) -> CmbConfig:
    await _feature_set_in_account(session, account_id, feature_set_id)
    config = (
        await session.execute(select(CmbConfig).where(CmbConfig.feature_set_id == feature_set_id))
    ).scalar_one_or_none()
    if config is None:
        raise EngagementError(f"feature set {feature_set_id} has no call me back config")
    return config


async def _effective_cmb_config(session: AsyncSession, feature_set_id: uuid.UUID) -> EffectiveCmbConfig:
    """The feature set's config; the defaults for a set enabled without one (e.g. by an older console)."""
    config = (
        await session.execute(select(CmbConfig).where(CmbConfig.feature_set_id == feature_set_id))
    ).scalar_one_or_none()
    if config is None:
        return DEFAULT_CMB_CONFIG
    return EffectiveCmbConfig(config.name, config.slot_picker, list(config.windows))


# --- Call Me Back requests -------------------------------------------------------------------------------------


def _epoch(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _chosen_slot(submission: CmbSubmission, now: datetime, settings: Settings) -> tuple[datetime, datetime]:
    """The slot picked on the phone, checked: both bounds, from < to, at most a day long, not over yet (allowing
    the phone's clock to lag by ``cmb_slot_skew_seconds``), and not further ahead than ``cmb_slot_horizon_days``.
    """
    if submission.preferred_from_time is None:
        raise InvalidInput("preferred_from_time is required")
    if submission.preferred_to_time is None:
        raise InvalidInput("preferred_to_time is required")
    start, end = _epoch(submission.preferred_from_time), _epoch(submission.preferred_to_time)
    if start > now + timedelta(days=settings.cmb_slot_horizon_days):
        raise InvalidInput("preferred_from_time is invalid: too far ahead")
    if end <= start or end - start > MAX_SLOT:
        raise InvalidInput("preferred_to_time is invalid: must be after preferred_from_time, at most 1 day later")
    if end <= now - timedelta(seconds=settings.cmb_slot_skew_seconds):
        raise InvalidInput("preferred_to_time is invalid: the slot is over")
    return start, end


async def submit_call_me_back(
    session: AsyncSession, settings: Settings, *, device: DeviceInfo, submission: CmbSubmission
) -> tuple[CmbRequest, list[uuid.UUID]]:
    """Store a call-back request from ``device`` and emit its ``cmb`` events; returns the request and event ids.

    Refusals: business number invalid (400) / not listed (404); Call Me Back off for its feature set or account
    (409); slot or alternate number unusable (400). With the slot picker off, the slot sent by the phone (if any)
    is ignored and the config's next window is used (SPEC §12 #35); when not interested there is no slot.
    """
    listed = await _listed_for_app(session, submission.business_number)
    if not await _feature_enabled(session, listed, "call_me_back"):
        raise Conflict("call me back is not enabled for business_number")
    config = await _effective_cmb_config(session, listed.feature_set_id)
    zone = await _account_zone(session, listed.account_id)
    # The request time as reported (whole seconds), so that CMB's from/to select what the payload shows.
    now = clock.now().replace(microsecond=0)

    alternate = ""
    if submission.alternate_number is not None:
        normalised = normalise_phone(submission.alternate_number)
        if normalised is None:
            raise InvalidInput("alternate_number is invalid")
        alternate = normalised
    if submission.is_interested and not submission.client_number_available and not alternate:
        raise InvalidInput("alternate_number is required when client_number_available is false")

    slot: tuple[datetime, datetime] | None = None
    if submission.is_interested:
        slot = _chosen_slot(submission, now, settings) if config.slot_picker else next_window(config.windows, now, zone)
    if slot is None:
        requested_date = requested_slot = NA
    else:
        local_start = slot[0].astimezone(zone)
        requested_date = local_start.strftime("%Y-%m-%d")
        requested_slot = local_start.strftime("%A")

    request = CmbRequest(
        id=uuid.uuid4(),
        account_id=listed.account_id,
        feature_set_id=listed.feature_set_id,
        business_number=listed.phone_number,
        feature_set_name=listed.feature_set_name,
        client_number=device.phone_number if submission.client_number_available else NOT_AVAILABLE,
        alternate_number=alternate,
        requested_at=now,
        requested_date=requested_date,
        requested_slot=requested_slot,
        preferred_from_time=slot[0] if slot else None,
        preferred_to_time=slot[1] if slot else None,
        is_interested=submission.is_interested,
        cmb_config_name=config.name,
    )
    session.add(request)
    await session.flush()
    body = cmb_payload(request)
    event_ids = await emit_event(
        session,
        account_id=listed.account_id,
        event_type="cmb",
        created_at=now,
        body=body,
    )
    return request, event_ids
