"""``callerid surveys`` and ``callerid cmb-configs``: surveys and Call Me Back configurations of feature sets."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from callerid.cli.common import JSON_OPTION, emit, parse_uuid_option, run_with_db
from callerid.config import Settings
from callerid.db import Database
from callerid.engagement import schemas, service
from callerid.engagement.models import Survey

surveys_app = typer.Typer(help="Surveys of feature sets (User Feedback).", no_args_is_help=True)
cmb_configs_app = typer.Typer(help="Call Me Back configurations of feature sets.", no_args_is_help=True)

ACCOUNT_OPTION = typer.Option(..., "--account", help="client account id")
FEATURE_SET_OPTION = typer.Option(..., "--feature-set", help="feature set id")


def _in_transaction(fn: Callable[[AsyncSession], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    async def run(_: Settings, db: Database) -> dict[str, Any]:
        async with db.transaction() as session:
            return await fn(session)

    return run_with_db(run)


def _survey_out(survey: Survey) -> dict[str, Any]:
    return {**schemas.survey_json(survey), "feature_set_id": str(survey.feature_set_id), "status": survey.status}


@surveys_app.command("create")
def surveys_create(
    account: str = ACCOUNT_OPTION,
    feature_set: str = FEATURE_SET_OPTION,
    name: str = typer.Option(..., "--name", help="survey name (the payload's `name`)"),
    questions: list[str] | None = typer.Option(
        None,
        "--question",
        help="a question, in order; repeat for each. Free text by default, or with its kind first: "
        "'rating:How was it?' (1-5), 'choice:Flower quality?|Good|Fine|Poor', 'text:Anything else?'. "
        "A call-rating survey takes one (its rating question; default: "
        f"'{service.DEFAULT_RATING_QUESTION}')",
    ),
    trigger: str = typer.Option("any", "--trigger", help="answered, missed (missed or rejected call) or any"),
    survey_type: str = typer.Option("questions", "--type", help="questions, or call-rating (one rating question)"),
    status: str = typer.Option("live", "--status", help="live (shown to phones) or paused"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create the survey of a feature set with surveys enabled; its id is UF's {surveyId}."""
    account_id = parse_uuid_option(account, "--account")
    feature_set_id = parse_uuid_option(feature_set, "--feature-set")

    async def create(session: AsyncSession) -> dict[str, Any]:
        survey = await service.create_survey(
            session,
            account_id=account_id,
            feature_set_id=feature_set_id,
            name=name,
            questions=[service.parse_question_spec(raw) for raw in questions or []],
            trigger=trigger,
            survey_type=survey_type.replace("-", "_"),
            status=status,
        )
        return _survey_out(survey)

    emit(_in_transaction(create), as_json, title="Survey created")


@surveys_app.command("set-status")
def surveys_set_status(
    account: str = ACCOUNT_OPTION,
    survey: str = typer.Option(..., "--survey", help="survey id"),
    status: str = typer.Option(..., "--status", help="live (shown to phones, takes answers) or paused (neither)"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Make a survey live or pause it."""
    account_id = parse_uuid_option(account, "--account")
    survey_id = parse_uuid_option(survey, "--survey")

    async def change(session: AsyncSession) -> dict[str, Any]:
        changed = await service.set_survey_status(session, account_id=account_id, survey_id=survey_id, status=status)
        return _survey_out(changed)

    emit(_in_transaction(change), as_json, title="Survey")


@surveys_app.command("list")
def surveys_list(account: str = ACCOUNT_OPTION, as_json: bool = JSON_OPTION) -> None:
    """The account's surveys, newest first."""
    account_id = parse_uuid_option(account, "--account")

    async def listing(session: AsyncSession) -> dict[str, Any]:
        surveys = await service.list_surveys(session, account_id)
        return {"surveys": [_survey_out(s) for s in surveys]}

    emit(_in_transaction(listing), as_json)


@cmb_configs_app.command("set")
def cmb_configs_set(
    account: str = ACCOUNT_OPTION,
    feature_set: str = FEATURE_SET_OPTION,
    name: str | None = typer.Option(None, "--name", help="cmb_config_name (default: Call Me Back)"),
    slot_picker: bool | None = typer.Option(
        None, "--slot-picker/--no-slot-picker", help="the user picks the slot (default: off)"
    ),
    windows: list[str] | None = typer.Option(
        None,
        "--window",
        help="callback window 'Saturday 12:30-13:00' in the account timezone; repeat; replaces all windows "
        "(default: Monday-Saturday, 30-minute windows 10:00-18:00)",
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create or change the Call Me Back configuration of a feature set with Call Me Back enabled."""
    account_id = parse_uuid_option(account, "--account")
    feature_set_id = parse_uuid_option(feature_set, "--feature-set")

    async def change(session: AsyncSession) -> dict[str, Any]:
        parsed = service.parse_windows(windows) if windows else None
        config = await service.set_cmb_config(
            session,
            account_id=account_id,
            feature_set_id=feature_set_id,
            name=name,
            slot_picker=slot_picker,
            windows=parsed,
        )
        return schemas.cmb_config_json(config)

    emit(_in_transaction(change), as_json, title="Call Me Back configuration")


@cmb_configs_app.command("show")
def cmb_configs_show(
    account: str = ACCOUNT_OPTION, feature_set: str = FEATURE_SET_OPTION, as_json: bool = JSON_OPTION
) -> None:
    """The Call Me Back configuration of a feature set."""
    account_id = parse_uuid_option(account, "--account")
    feature_set_id = parse_uuid_option(feature_set, "--feature-set")

    async def show(session: AsyncSession) -> dict[str, Any]:
        return schemas.cmb_config_json(await service.cmb_config_of(session, account_id, feature_set_id))

    emit(_in_transaction(show), as_json, title="Call Me Back configuration")
