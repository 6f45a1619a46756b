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
from callerid.analytics.counting import add_in_session, after_commit, engagement_key
from callerid.analytics.tally import Tally
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
from callerid.engagement.windows import DEFAULT_WINDOWS, WEEKDAYS, WindowError, next_window, parse_window
from callerid.failures import Conflict, InvalidInput
from callerid.ops import metrics
from callerid.phone import normalise_phone
from callerid.webhooks.service import emit_event

# --- Call Me Back configuration ------------------------------------------------------------------------------


@dataclass(frozen=True)
class EffectiveCmbConfig:
    name: str
    slot_picker: bool
    windows: list[dict[str, str]]


DEFAULT_CMB_CONFIG = EffectiveCmbConfig(DEFAULT_CMB_CONFIG_NAME, False, DEFAULT_WINDOWS)


CMB = "call_me_back_requests"  # its counter in the daily figures


def parse_windows(texts: Sequence[str]) -> list[dict[str, str]]:
    """CLI/console window texts (``Saturday 12:30-13:00``), checked; EngagementError names the bad one."""
    try:
        return [parse_window(text) for text in texts]
    except ValueError as exc:
        raise EngagementError(str(exc)) from None


def _check_config_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise EngagementError("cmb config name must be 1-100 characters")
    _check_displayable(name, "cmb config name")
    return name


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
        name = _check_config_name(name)
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
    config = await find_cmb_config(session, account_id, feature_set_id)
    if config is None:
        raise EngagementError(f"feature set {feature_set_id} has no call me back config")
    return config


async def find_cmb_config(session: AsyncSession, account_id: uuid.UUID, feature_set_id: uuid.UUID) -> CmbConfig | None:
    """The account's feature set's saved config, or None while it has none (phones then get the defaults)."""
    await _feature_set_in_account(session, account_id, feature_set_id)
    return (
        await session.execute(select(CmbConfig).where(CmbConfig.feature_set_id == feature_set_id))
    ).scalar_one_or_none()


async def ensure_cmb_config(session: AsyncSession, *, account_id: uuid.UUID, feature_set_id: uuid.UUID) -> CmbConfig:
    """The config of a set with Call Me Back on, saved with the defaults when it has none yet (what
    ``callerid feature-sets create --call-me-back`` does), so the console and ``cmb-configs show`` agree."""
    config = await find_cmb_config(session, account_id, feature_set_id)
    if config is not None:
        return config
    return await set_cmb_config(session, account_id=account_id, feature_set_id=feature_set_id)


# --- the console's Call Me Back form ----------------------------------------------------------------------------
# A person edits hours (Monday 10:00-18:00) and a slot length; what is stored stays the list of windows (slots)
# that phones are given, e.g. the defaults' sixteen 30-minute windows a day. Editing hours instead of slots keeps
# the form to a few inputs a day, where the defaults alone would be 96 rows.

# Slot lengths the console offers, in minutes; hours are cut into slots of one length (the last may be shorter).
SLOT_MINUTES = (15, 30, 60, 120)


@dataclass(frozen=True)
class WindowRow:
    """One window of hours as a form sends it: a weekday and two times of day typed separately."""

    weekday: str
    start: str
    end: str


@dataclass(frozen=True)
class CallbackHours:
    """Stored windows as a person edits them: each weekday's hours (touching slots run together) and the slot
    length that cuts them back into the same windows; ``slot_minutes`` None when no offered length does (windows
    set by the CLI, say), and each window is then shown and kept as it is."""

    windows: list[dict[str, str]]
    slot_minutes: int | None


class CallbackHoursError(EngagementError):
    """Every problem of a Call Me Back form at once, so that each is shown next to its input. Keys: ``"name"``,
    ``"slot_minutes"``, ``"windows"`` (none given) or a window's position in the rows given."""

    def __init__(self, problems: dict[str | int, str]):
        super().__init__(next(iter(problems.values())))
        self.problems = problems


def _minutes(clock_text: str) -> int:
    hours, minutes = clock_text.split(":")
    return int(hours) * 60 + int(minutes)


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _in_week_order(windows: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    return sorted(windows, key=lambda w: (WEEKDAYS.index(w["weekday"]), w["start"], w["end"]))


def split_into_slots(windows: Sequence[dict[str, str]], slot_minutes: int | None) -> list[dict[str, str]]:
    """Each window cut into slots of ``slot_minutes`` (the last one shorter when it does not divide); None keeps
    the windows as they are."""
    if slot_minutes is None:
        return [dict(window) for window in windows]
    slots = []
    for window in windows:
        start, end = _minutes(window["start"]), _minutes(window["end"])
        while start < end:
            slots.append(
                {"weekday": window["weekday"], "start": _clock(start), "end": _clock(min(start + slot_minutes, end))}
            )
            start += slot_minutes
    return slots


def hours_of(windows: Sequence[dict[str, str]]) -> CallbackHours:
    """The hours and slot length that ``split_into_slots`` turns back into exactly ``windows``."""
    ordered = _in_week_order(windows)
    if not ordered:
        return CallbackHours([], SLOT_MINUTES[1])
    hours: list[dict[str, str]] = []
    for window in ordered:
        last = hours[-1] if hours else None
        if last is not None and last["weekday"] == window["weekday"] and last["end"] == window["start"]:
            last["end"] = window["end"]
        else:
            hours.append(dict(window))
    for slot_minutes in SLOT_MINUTES:
        if split_into_slots(hours, slot_minutes) == ordered:
            return CallbackHours(hours, slot_minutes)
    return CallbackHours(ordered, None)


def check_callback_windows(rows: Sequence[WindowRow]) -> tuple[list[dict[str, str]], dict[int, str]]:
    """The rows as windows (``windows.parse_window``'s rules and words), in weekday then time order, and the
    problem of each bad row by its position. Windows of one day may not overlap (touching is fine: 10:00-12:00
    and 12:00-14:00); the later one is reported."""
    parsed: list[tuple[int, dict[str, str]]] = []
    problems: dict[int, str] = {}
    for position, row in enumerate(rows):
        start, end = row.start.strip(), row.end.strip()
        if not start or not end:
            problems[position] = f"window on {row.weekday}: both a start and an end time are needed"
            continue
        try:
            parsed.append((position, parse_window(f"{row.weekday} {start}-{end}")))
        except WindowError as exc:
            problems[position] = str(exc)
    parsed.sort(key=lambda item: (WEEKDAYS.index(item[1]["weekday"]), item[1]["start"], item[1]["end"]))
    latest: dict[str, dict[str, str]] = {}  # per weekday, the window ending last so far
    for position, window in parsed:
        before = latest.get(window["weekday"])
        if before is not None and window["start"] < before["end"]:
            problems.setdefault(
                position,
                f"window {window['weekday']} {window['start']}-{window['end']} overlaps "
                f"{before['start']}-{before['end']} on the same day",
            )
        if before is None or window["end"] > before["end"]:
            latest[window["weekday"]] = window
    return [window for _, window in parsed], problems


async def set_callback_hours(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    feature_set_id: uuid.UUID,
    name: str,
    slot_picker: bool,
    rows: Sequence[WindowRow],
    slot_minutes: int | None,
) -> CmbConfig:
    """The console's form: name, slot picker and hours cut into slots (replacing every window), each input
    checked before ``set_cmb_config`` writes. Unlike the CLI's ``--window`` list, windows of one day may not
    overlap here; the CLI and the stored format are unchanged."""
    problems: dict[str | int, str] = {}
    checked_name = name
    try:
        checked_name = _check_config_name(name)
    except EngagementError as exc:
        problems["name"] = str(exc)
    if slot_minutes is not None and slot_minutes not in SLOT_MINUTES:
        problems["slot_minutes"] = "slot length must be one of 15, 30, 60 or 120 minutes"
    windows, window_problems = check_callback_windows(rows)
    problems.update(window_problems)
    if not rows:
        problems["windows"] = "at least one callback window is needed"
    if problems:
        raise CallbackHoursError(problems)
    return await set_cmb_config(
        session,
        account_id=account_id,
        feature_set_id=feature_set_id,
        name=checked_name,
        slot_picker=slot_picker,
        windows=split_into_slots(windows, slot_minutes),
    )


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
    # Counted in the daily figures with the request itself (issue 13), in the day it was made in the account's zone.
    figures = Tally()
    figures.add(engagement_key(listed.account_id, zone.key, now, listed.feature_set_id, listed.phone_number), CMB)
    await add_in_session(session, figures)
    after_commit(session, metrics.CALL_ME_BACK_REQUESTS.inc)
    body = cmb_payload(request)
    event_ids = await emit_event(
        session,
        account_id=listed.account_id,
        event_type="cmb",
        created_at=now,
        body=body,
    )
    return request, event_ids
