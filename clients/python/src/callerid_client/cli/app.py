"""The commands of ``callerid-client``. Every command takes ``--json`` and then prints exactly one JSON object on
stdout (``listen``: one per event); progress and tables go to stderr/stdout only without it; errors go to stderr
with a non-zero exit (1: the API or the network failed, 2: bad input)."""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from callerid_client import __version__
from callerid_client.cli.csvfiles import CsvError, problems_of, read_calls, write_outcomes
from callerid_client.cli.listen import Receiver
from callerid_client.cli.profiles import ProfileError, load_token, resolve, save_token, token_cache_file
from callerid_client.client import Client
from callerid_client.errors import APIError, CallerIdError
from callerid_client.jobs import NumbersOutcome, NumbersProgress
from callerid_client.jobs import Progress as RecordsProgress
from callerid_client.models import CmbEvent, UserFeedbackEvent, epoch_ms

app = typer.Typer(
    name="callerid-client",
    help="The callerid business API from the command line: tokens, labels, call personalisation from a CSV, "
    "number management, exports and a local webhook receiver. Credentials: --base-url/--account/--key-id/--api-key, "
    "CALLERID_CLIENT_* environment variables, or a profile of ~/.config/callerid/client.toml.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
numbers_app = typer.Typer(help="Number management: publish, delist, list.", no_args_is_help=True)
batch_app = typer.Typer(help="Batches of call records.", no_args_is_help=True)
feature_sets_app = typer.Typer(help="Feature sets.", no_args_is_help=True)
cmb_app = typer.Typer(help="Call Me Back logs (deprecated API).", no_args_is_help=True)
feedback_app = typer.Typer(help="User feedback logs (deprecated API).", no_args_is_help=True)
app.add_typer(numbers_app, name="numbers")
app.add_typer(batch_app, name="batch")
app.add_typer(feature_sets_app, name="feature-sets")
app.add_typer(cmb_app, name="cmb")
app.add_typer(feedback_app, name="feedback")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="print one JSON object on stdout")]


class Settings:
    def __init__(self) -> None:
        self.options: dict[str, str | None] = {}
        self.profile: str | None = None
        self.config: str | None = None
        self.wait_for_token = False
        self.batches_per_minute = 60


_settings = Settings()


@app.callback()
def _global(
    profile: Annotated[str | None, typer.Option(help="profile of the config file")] = None,
    config: Annotated[str | None, typer.Option(help="config file (default ~/.config/callerid/client.toml)")] = None,
    base_url: Annotated[str | None, typer.Option(help="the deployment, e.g. https://callerid.example.com")] = None,
    account: Annotated[str | None, typer.Option(help="the clientAccountId")] = None,
    key_id: Annotated[str | None, typer.Option(help="API key id")] = None,
    api_key: Annotated[str | None, typer.Option(help="API key secret")] = None,
    wait_for_token: Annotated[
        bool, typer.Option(help="when the account's token mint limit is reached, wait instead of failing")
    ] = False,
    batches_per_minute: Annotated[
        int, typer.Option(help="batches per minute per token (the server's limit, 60 unless its operator raised it)")
    ] = 60,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log each retry on stderr")] = False,
) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.ERROR, format="%(message)s", stream=sys.stderr)
    _settings.wait_for_token = wait_for_token
    _settings.batches_per_minute = batches_per_minute
    _settings.profile = profile
    _settings.config = config
    _settings.options = {"base_url": base_url, "account_id": account, "key_id": key_id, "api_key": api_key}


def fail(message: str, code: int = 1, as_json: bool = False, **extra: Any) -> NoReturn:
    if as_json:
        print(json.dumps({"error": {"message": message, **extra}}), file=sys.stderr)
    else:
        err.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)


@contextmanager
def client(as_json: bool) -> Iterator[Client]:
    try:
        profile = resolve(_settings.options, _settings.profile, _settings.config)
    except ProfileError as exc:
        fail(str(exc), 2, as_json)
    cache = token_cache_file(profile)
    cached = load_token(cache)
    try:
        with Client(
            profile.base_url,
            profile.account_id,
            profile.key_id,
            profile.api_key,
            on_mint_limit="wait" if _settings.wait_for_token else "raise",
            batches_per_minute=_settings.batches_per_minute or None,
        ) as made:
            if cached is not None:
                made.tokens.adopt(*cached)
            try:
                yield made
            finally:
                current = made.tokens.snapshot()
                if current is not None and (cached is None or current[0] != cached[0]):
                    save_token(cache, *current)
    except APIError as exc:
        fail(str(exc), 1, as_json, status=exc.status, slug=exc.slug, body=exc.body)
    except CallerIdError as exc:
        fail(str(exc), 1, as_json)


def emit(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False, default=str))


def _ms(value: str, name: str, as_json: bool, end_of_day: bool = False) -> int:
    """Epoch milliseconds from digits, a day (YYYY-MM-DD, UTC) or an ISO-8601 date-time (UTC if no offset)."""
    text = value.strip()
    if text.isdigit():
        return int(text)
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return epoch_ms(moment) + (86_400_000 - 1 if end_of_day else 0)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        fail(f"--{name}: {value!r} is not epoch milliseconds, YYYY-MM-DD or an ISO-8601 date-time", 2, as_json)
    return epoch_ms(parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC))


# --- token, labels ---------------------------------------------------------------------------------------------------


@app.command()
def token(
    new: Annotated[bool, typer.Option("--new", help="mint a new token even if the cached one is still fresh")] = False,
    as_json: JsonFlag = False,
) -> None:
    """An access token for other tools (e.g. curl): the cached one while fresh, else a new one. Tokens live 60
    minutes; the account may mint 10 per 30 minutes."""
    with client(as_json) as api:
        value = api.mint_token().token if new else api.get_token()
        snapshot = api.tokens.snapshot()
    age = 0.0 if snapshot is None else snapshot[1]
    expires = datetime.now(UTC).timestamp() - age + api.options.token_ttl
    expires_at = datetime.fromtimestamp(expires, UTC).isoformat(timespec="seconds")
    if as_json:
        emit({"token": value, "expires_at": expires_at})
    else:
        out.print(value)
        err.print(f"valid until about {expires_at}")


@app.command()
def labels(as_json: JsonFlag = False) -> None:
    """The account's dynamic labels (ids to use as label_id)."""
    with client(as_json) as api:
        found = list(api.iter_labels())
    if as_json:
        emit({"labels": [label.model_dump() for label in found]})
        return
    table = Table("id", "name", "category", "sub category", "created at")
    for label in found:
        table.add_row(label.id, label.name, str(label.category), str(label.sub_category), label.created_at)
    out.print(table)


# --- personalise -----------------------------------------------------------------------------------------------------


@app.command()
def personalise(
    csv_file: Annotated[Path, typer.Option("--csv", help="CSV of calls (see README: columns)")],
    wait: Annotated[bool, typer.Option("--wait", help="wait for every record's final outcome")] = False,
    skip_invalid: Annotated[
        bool, typer.Option("--skip-invalid", help="send the valid rows even when some are invalid")
    ] = False,
    outcomes: Annotated[
        Path | None, typer.Option(help="CSV of per-record outcomes (default: <csv>.outcomes.csv)")
    ] = None,
    timeout: Annotated[float | None, typer.Option(help="give up waiting after this many seconds")] = None,
    concurrency: Annotated[int, typer.Option(help="batches in flight")] = 4,
    as_json: JsonFlag = False,
) -> None:
    """Personalise every call of a CSV (batches of 500, paced, retried); with --wait, until every outcome is known.

    Every row is checked first with the API's rules; if any is invalid nothing is sent (each bad row is listed with
    its line and field) unless --skip-invalid."""
    try:
        calls = read_calls(csv_file)
    except CsvError as exc:
        fail(str(exc), 2, as_json)
    outcomes_path = outcomes or csv_file.with_name(csv_file.stem + ".outcomes.csv")
    with client(as_json) as api:
        labels = {label.id.lower() for label in api.iter_labels()}
        problems = problems_of(calls, labels)
        if problems and not skip_invalid:
            shown = problems[:20]
            if as_json:
                fail(
                    f"{len(problems)} invalid row(s) in {csv_file}; nothing sent",
                    2,
                    True,
                    rows=[{"line": p.line, "field": p.field, "message": p.message} for p in problems],
                )
            for problem in shown:
                err.print(f"{csv_file} {problem}", markup=False)
            more = f" ({len(problems) - len(shown)} more not shown)" if len(problems) > len(shown) else ""
            fail(f"{len(problems)} invalid row(s){more}; nothing sent (--skip-invalid sends the valid ones)", 2)
        with _records_progress(len(calls.records), wait, quiet=as_json) as on_progress:
            result = api.personalise_many(
                calls.records,
                on_invalid="skip",
                check_labels=True,
                wait=wait,
                timeout=timeout,
                concurrency=concurrency,
                on_progress=on_progress,
            )
    write_outcomes(outcomes_path, result.outcomes, calls.lines)
    counts = result.counts()
    if as_json:
        emit(
            {
                "total": len(result.outcomes),
                "outcomes": counts,
                "batch_ids": result.batch_ids,
                "finished": result.finished,
                "outcomes_csv": str(outcomes_path),
            }
        )
        return
    table = Table("outcome", "records", title=f"{len(result.outcomes):,} records, {len(result.batch_ids)} batches")
    for name, count in sorted(counts.items(), key=lambda item: -item[1]):
        table.add_row(name, f"{count:,}")
    out.print(table)
    out.print(f"per-record outcomes: {outcomes_path}")
    if not wait:
        out.print("not waited for: `callerid-client batch status ID` shows a batch's outcomes")


@contextmanager
def _records_progress(total: int, wait: bool, quiet: bool) -> Iterator[Callable[[RecordsProgress], None] | None]:
    if quiet:
        yield None
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    )
    lock = threading.Lock()
    with Progress(*columns, console=err, transient=False) as bar:
        task = bar.add_task("outcomes" if wait else "accepted", total=total, detail="")

        def update(progress: RecordsProgress) -> None:
            with lock:
                so_far = ", ".join(f"{name} {count:,}" for name, count in progress.outcomes.most_common())
                detail = f"sent {progress.sent:,} · accepted {progress.accepted:,}" + (f" · {so_far}" if so_far else "")
                done = progress.finished if wait else progress.accepted + progress.invalid
                bar.update(task, completed=done, detail=detail)

        yield update


# --- batch -----------------------------------------------------------------------------------------------------------


@batch_app.command("status")
def batch_status(
    batch_id: Annotated[str, typer.Argument(help="the batch id (B2's batch_id, or R1/B1's BatchID)")],
    as_json: JsonFlag = False,
) -> None:
    """Every record of a batch with its outcome."""
    with client(as_json) as api:
        status = api.batch_status(batch_id)
    if as_json:
        emit(status.model_dump())
        return
    table = Table("id", "caller", "receiver", "status", "reason", "message", title=f"batch {batch_id}")
    counts: dict[str, int] = {}
    for record in status.data:
        info = record.status_info
        counts[info.outcome] = counts.get(info.outcome, 0) + 1
        table.add_row(
            record.id,
            str(record.caller_number),
            str(record.receiver_number),
            info.status,
            info.reason or "",
            info.message or "",
        )
    out.print(table)
    out.print(", ".join(f"{name}: {count}" for name, count in counts.items()) or "no records (unknown batch?)")


# --- numbers ---------------------------------------------------------------------------------------------------------


def _read_numbers(path: Path, as_json: bool) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}", 2, as_json)
    numbers = [line.split("#", 1)[0].strip() for line in lines]
    found = [number for number in numbers if number]
    if not found:
        fail(f"{path} holds no numbers (one per line)", 2, as_json)
    return found


def _numbers_command(action: str, feature_set: str, file: Path, wait: bool, timeout: float, as_json: bool) -> None:
    numbers = _read_numbers(file, as_json)
    with client(as_json) as api, _numbers_progress(len(numbers), wait, quiet=as_json) as on_progress:
        run = api.publish_numbers if action == "publish" else api.delist_numbers
        outcome = run(feature_set, numbers, wait=wait, timeout=timeout, on_progress=on_progress)
    _print_numbers_outcome(outcome, wait, as_json)


@contextmanager
def _numbers_progress(total: int, wait: bool, quiet: bool) -> Iterator[Callable[[NumbersProgress], None] | None]:
    if quiet:
        yield None
        return
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err
    ) as bar:
        task = bar.add_task("sent", total=total)

        def update(progress: NumbersProgress) -> None:
            if progress.sent < progress.total or not wait:
                bar.update(task, completed=progress.sent)
            else:
                bar.update(task, description="final", completed=progress.finished, total=max(progress.accepted, 1))

        yield update


def _print_numbers_outcome(outcome: NumbersOutcome, wait: bool, as_json: bool) -> None:
    buckets = {name: numbers for name, numbers in outcome.buckets.items() if numbers}
    if as_json:
        emit(
            {
                "action": outcome.action,
                "buckets": buckets,
                "states": outcome.states,
                "counts": outcome.counts(),
                "finished": outcome.finished,
            }
        )
        return
    table = Table("bucket", "numbers", "examples", title=f"{outcome.action}: answers")
    for name, numbers in buckets.items():
        table.add_row(name, f"{len(numbers):,}", ", ".join(numbers[:3]) + (" ..." if len(numbers) > 3 else ""))
    out.print(table)
    if wait and outcome.states:
        states = Table("state", "numbers", title="final states" if outcome.finished else "states when the wait ended")
        for name, count in outcome.counts().items():
            states.add_row(name, f"{count:,}")
        out.print(states)


@numbers_app.command("publish")
def numbers_publish(
    feature_set: Annotated[str, typer.Option(help="the featureSetId")],
    file: Annotated[Path, typer.Option(help="numbers, one per line ('#' starts a comment)")],
    wait: Annotated[bool, typer.Option("--wait", help="wait until every number is listed or failed")] = False,
    timeout: Annotated[float, typer.Option(help="give up waiting after this many seconds")] = 600.0,
    as_json: JsonFlag = False,
) -> None:
    """List numbers as verified in a feature set (10,000 per request)."""
    _numbers_command("publish", feature_set, file, wait, timeout, as_json)


@numbers_app.command("delist")
def numbers_delist(
    feature_set: Annotated[str, typer.Option(help="the featureSetId")],
    file: Annotated[Path, typer.Option(help="numbers, one per line ('#' starts a comment)")],
    wait: Annotated[bool, typer.Option("--wait", help="wait until every number is delisted")] = False,
    timeout: Annotated[float, typer.Option(help="give up waiting after this many seconds")] = 600.0,
    as_json: JsonFlag = False,
) -> None:
    """Delist numbers from a feature set."""
    _numbers_command("delist", feature_set, file, wait, timeout, as_json)


@numbers_app.command("list")
def numbers_list(
    feature_set: Annotated[str | None, typer.Option(help="only this feature set")] = None,
    department: Annotated[str | None, typer.Option(help="only this department")] = None,
    operation: Annotated[str | None, typer.Option(help="only this operation")] = None,
    process: Annotated[str | None, typer.Option(help="only this process (and its sub-processes)")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Business numbers (pending, listed, delisting, failed), every page."""
    with client(as_json) as api:
        found = list(
            api.iter_numbers(
                feature_set_id=feature_set, department_id=department, operation_id=operation, process_id=process
            )
        )
    if as_json:
        emit({"numbers": [number.model_dump() for number in found]})
        return
    table = Table("number", "status", "feature set", "process", "call me back", "updated at")
    for number in found:
        table.add_row(
            number.phone_number,
            number.status,
            number.feature_set_name,
            number.process,
            number.call_me_back,
            number.updated_at,
        )
    out.print(table)
    out.print(f"{len(found):,} numbers")


@feature_sets_app.command("list")
def feature_sets_list(
    department: Annotated[str | None, typer.Option(help="only this department")] = None,
    operation: Annotated[str | None, typer.Option(help="only this operation")] = None,
    process: Annotated[str | None, typer.Option(help="only this process (and its sub-processes)")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Feature sets (ids to publish numbers into), every page."""
    with client(as_json) as api:
        found = list(api.iter_feature_sets(department_id=department, operation_id=operation, process_id=process))
    if as_json:
        emit({"feature_sets": [feature_set.model_dump() for feature_set in found]})
        return
    table = Table("id", "name", "status", "department", "process", "call me back", "survey")
    for fs in found:
        table.add_row(
            fs.id, fs.name, fs.status, fs.department_name, fs.process_name, str(fs.call_me_back), str(fs.survey)
        )
    out.print(table)


# --- exports ---------------------------------------------------------------------------------------------------------


def _export(api: Client, url: str, output: Path | None, as_json: bool) -> None:
    if output is not None:
        output.write_text(api.download(url), encoding="utf-8")
    if as_json:
        emit({"url": url, **({"file": str(output)} if output is not None else {})})
    else:
        out.print(url)
        if output is not None:
            err.print(f"saved to {output}")


@cmb_app.command("export")
def cmb_export(
    start: Annotated[str, typer.Option("--from", help="epoch ms, YYYY-MM-DD or ISO-8601 (UTC unless offset)")],
    end: Annotated[str, typer.Option("--to", help="epoch ms, YYYY-MM-DD (whole day) or ISO-8601")],
    output: Annotated[Path | None, typer.Option(help="also download the CSV to this file")] = None,
    as_json: JsonFlag = False,
) -> None:
    """A 10-minute download link for the Call Me Back requests in a time range."""
    start_ms, end_ms = _ms(start, "from", as_json), _ms(end, "to", as_json, end_of_day=True)
    with client(as_json) as api:
        _export(api, api.cmb_export(start_ms, end_ms).url, output, as_json)


@feedback_app.command("export")
def feedback_export(
    survey: Annotated[str, typer.Argument(help="the survey id")],
    start: Annotated[str, typer.Option("--from", help="epoch ms or YYYY-MM-DD (account timezone)")],
    end: Annotated[str | None, typer.Option("--to", help="epoch ms or YYYY-MM-DD; default now")] = None,
    output: Annotated[Path | None, typer.Option(help="also download the CSV to this file")] = None,
    as_json: JsonFlag = False,
) -> None:
    """A 10-minute download link for a survey's answers."""
    with client(as_json) as api:
        _export(api, api.feedback_export(survey, start, end).url, output, as_json)


# --- listen ----------------------------------------------------------------------------------------------------------


@app.command()
def listen(
    port: Annotated[int, typer.Option(help="port to listen on")] = 8787,
    secret: Annotated[
        list[str] | None, typer.Option(help="the webhook's whsec_ secret (repeat during a rotation)")
    ] = None,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    max_events: Annotated[int | None, typer.Option(help="stop after this many deliveries")] = None,
    as_json: JsonFlag = False,
) -> None:
    """A local webhook receiver: verifies each delivery's signature and prints the event (JSON lines with --json).

    Answers 200 for a verified event, 401 when the signature or timestamp does not verify."""
    if not secret:
        fail("--secret whsec_... is required (the webhook's signing secret)", 2, as_json)
    try:
        from callerid_client.webhooks import sign

        for value in secret:
            sign(value, "probe", 0, b"")
    except ValueError as exc:
        fail(str(exc), 2, as_json)

    def on_event(
        event: CmbEvent | UserFeedbackEvent | None, headers: dict[str, str], body: bytes, problem: str | None
    ) -> None:
        if as_json:
            line: dict[str, Any] = {"verified": problem is None, "webhook_id": headers.get("webhook-id")}
            if event is not None:
                line["event"] = event.model_dump()
            else:
                line["problem"] = problem
            print(json.dumps(line, ensure_ascii=False), flush=True)
            return
        if event is None:
            err.print(f"[red]refused[/] delivery {escape(str(headers.get('webhook-id')))}: {escape(str(problem))}")
            return
        if isinstance(event, CmbEvent):
            p = event.cmb_payload
            summary = (
                f"call me back: {p.client_number} (alt {p.alternate_number or '-'}) for {p.business_number} "
                f"[{p.feature_set}], interested={p.is_interested}, slot {p.requested_date} {p.requested_slot}"
            )
        else:
            s = event.survey_payload
            answers = "; ".join(f"{r.question} = {r.response}" for r in s.user_responses)
            summary = f"survey {s.name!r} from {s.client_number} for {s.business_number}: {answers}"
        out.print(
            f"[green]verified[/] {event.event_type} {event.event_id} at {event.created.isoformat()}: {escape(summary)}"
        )
        out.print_json(body.decode("utf-8", "replace"))

    try:
        server = Receiver((host, port), secret, on_event, max_events=max_events)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror}", 1, as_json)
    if not as_json:
        err.print(f"listening on http://{host}:{server.server_address[1]}/ (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@app.command()
def version() -> None:
    """The client's version."""
    out.print(__version__)


def run() -> None:
    app()
