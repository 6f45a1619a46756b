"""``callerid analytics``: check the daily figures against a recount of the raw data, or rebuild them from it (for days
stored before analytics existed). Thin over ``callerid.analytics.recount``."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import typer

from callerid import clock
from callerid.analytics import recount
from callerid.analytics.tally import day_in
from callerid.cli.common import JSON_OPTION, emit, fail, parse_uuid_option, run_with_db
from callerid.config import Settings
from callerid.db import Database

analytics_app = typer.Typer(
    help="Daily figures (issue 13): verify them against the raw data, or rebuild days from it.", no_args_is_help=True
)

_ACCOUNT = typer.Option(..., "--account", help="client account id")


def _day(value: str | None, name: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        fail(f"{name} must be a day, YYYY-MM-DD")


def _json_key(what: str, key: Any) -> dict[str, Any]:
    if what == "webhook_delays":
        day, bucket = key
        return {"day": day.isoformat(), "bucket": bucket}
    return {
        "day": key.day.isoformat(),
        "label_id": str(key.label_id),
        "feature_set_id": str(key.feature_set_id),
        "business_number": key.business_number,
    }


@analytics_app.command("verify")
def verify(
    account: str = _ACCOUNT,
    start: str | None = typer.Option(None, "--from", help="first day, YYYY-MM-DD (default: 30 days ago)"),
    end: str | None = typer.Option(None, "--to", help="last day, YYYY-MM-DD (default: today, account's timezone)"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Compare the stored figures with a recount of the raw data; prints the differences, exits 1 if there are any.

    Days whose raw data was purged (retention) differ by design: the figures stay, the raw data does not.
    """
    account_id = parse_uuid_option(account, "--account")
    first, last = _day(start, "--from"), _day(end, "--to")

    async def run(_: Settings, db: Database) -> dict[str, Any]:
        try:
            timezone = await recount.account_timezone_of(db, account_id)
        except LookupError as exc:
            fail(str(exc))
        today = day_in(timezone, clock.now())
        to_day = last or today
        from_day = first or to_day - timedelta(days=30)
        found = await recount.stored_all(db, account_id, from_day, to_day)
        expected = await recount.recount_all(db, account_id, from_day, to_day)
        rows = [
            {"what": what, **_json_key(what, key), "recounted": want, "stored": have}
            for what, key, want, have in recount.differences(expected, found)
        ]
        return {
            "account_id": str(account_id),
            "from": from_day.isoformat(),
            "to": to_day.isoformat(),
            "keys_checked": len(set(expected[0]) | set(found[0])),
            "differences": rows,
        }

    result = run_with_db(run)
    emit(result, as_json, title="Figures against a recount of the raw data")
    if result["differences"]:
        raise typer.Exit(1)


@analytics_app.command("rebuild")
def rebuild(
    account: str = _ACCOUNT,
    start: str = typer.Option(..., "--from", help="first day, YYYY-MM-DD (the account's timezone)"),
    end: str = typer.Option(..., "--to", help="last day, YYYY-MM-DD"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Replace the figures of these days by a recount of the raw data (data stored before analytics existed).

    Refused for days whose raw data may already have been purged by retention: their figures are all there is.
    """
    account_id = parse_uuid_option(account, "--account")
    first, last = _day(start, "--from"), _day(end, "--to")
    assert first is not None and last is not None

    async def run(settings: Settings, db: Database) -> dict[str, Any]:
        try:
            keys = await recount.rebuild(db, settings, account_id, first, last, clock.now())
        except (LookupError, ValueError) as exc:
            fail(str(exc))
        return {"account_id": str(account_id), "from": first.isoformat(), "to": last.isoformat(), "keys": keys}

    emit(run_with_db(run), as_json, title="Figures rebuilt from the raw data")
