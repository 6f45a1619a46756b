"""Manage listing through the console (SPEC §5.7-§5.9, §7.3-§7.5): paste or upload numbers, a preview classified by
the NL/ND code with nothing written, Append / Rewrite / Delist confirmed, the jobs' progress until done; bad input
next to its field, caps, archived sets, and owners limited to their subtree."""

from __future__ import annotations

import html
import re
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from callerid.config import Settings
from callerid.db import Database
from callerid.jobs.models import Job
from callerid.jobs.runner import JobRunner
from callerid.numbers import service as numbers
from callerid.numbers.models import BusinessNumber, NumberJob
from tests.console.conftest import World, browser, build_world, csrf_of, sign_in
from tests.numbers.conftest import settle

JOB_LINK = re.compile(r"/console/feature-sets/([0-9a-f-]{36})/listing/jobs/([0-9a-f-]{36})(?:\?also=([0-9a-f-]{36}))?")


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    return {"webhook_allow_private": True, "number_job_delay_seconds": 0, **getattr(request, "param", {})}


@pytest.fixture
async def world(db: Database, settings: Settings) -> World:
    return await build_world(db, settings, "Acme Flowers")


async def signed_in(app: Any, world: World, role: str = "admin") -> httpx.AsyncClient:
    http = browser(app)
    person = world.people[role]
    assert (await sign_in(http, person.email, person.password)).status_code == 303
    return http


def numbers_of(start: int, count: int) -> list[str]:
    return [f"91987650{start + i:04d}" for i in range(count)]


async def states(db: Database) -> dict[str, tuple[str, uuid.UUID | None]]:
    async with db.session() as session:
        rows = await session.execute(
            select(BusinessNumber.phone_number, BusinessNumber.status, BusinessNumber.feature_set_id)
        )
        return {number: (status, fs) for number, status, fs in rows.all()}


async def counts(db: Database) -> tuple[int, int, int]:
    """(numbers, number jobs, queued jobs): a preview must leave all three alone."""
    async with db.session() as session:
        return (
            await session.scalar(select(func.count()).select_from(BusinessNumber)) or 0,
            await session.scalar(select(func.count()).select_from(NumberJob)) or 0,
            await session.scalar(select(func.count()).select_from(Job).where(Job.kind == "numbers.process")) or 0,
        )


async def preview(
    http: httpx.AsyncClient,
    fs: str,
    mode: str,
    pasted: str = "",
    file: tuple[str, bytes, str] | None = None,
) -> httpx.Response:
    page = await http.get(f"/console/feature-sets/{fs}/listing")
    assert page.status_code == 200, page.text
    data = {"csrf_token": csrf_of(page.text), "mode": mode, "numbers": pasted}
    files = {"file": file} if file is not None else {"file": ("", b"", "application/octet-stream")}
    return await http.post(f"/console/feature-sets/{fs}/listing/preview", data=data, files=files)


def hidden(page: str, name: str) -> str:
    found = re.search(rf'<input type="hidden" name="{name}" value="([^"]*)"', page)
    assert found is not None, f"no hidden {name}"
    return html.unescape(found.group(1))


async def confirm(http: httpx.AsyncClient, fs: str, shown: httpx.Response, **changes: str) -> httpx.Response:
    data = {
        "csrf_token": csrf_of(shown.text),
        "mode": hidden(shown.text, "mode"),
        "numbers": hidden(shown.text, "numbers"),
    }
    if 'name="others_digest"' in shown.text:
        data["others_digest"] = hidden(shown.text, "others_digest")
    data.update(changes)
    return await http.post(f"/console/feature-sets/{fs}/listing", data=data)


async def list_now(db: Database, settings: Settings, runner: JobRunner, fs: str, listed: list[str]) -> None:
    async with db.transaction() as session:
        feature_set = await numbers.feature_set_of(session, await account_of(db, fs), uuid.UUID(fs))
        await numbers.list_numbers_into(
            session, settings, feature_set=feature_set, raw_numbers=listed, created_by_email="api@example.com"
        )
    await settle(runner)


async def account_of(db: Database, fs: str) -> uuid.UUID:
    from callerid.numbers.models import FeatureSet

    async with db.session() as session:
        found = await session.get(FeatureSet, uuid.UUID(fs))
    assert found is not None
    return found.account_id


def text_of(page: str) -> str:
    """The page's text as read: tags out, white space collapsed (none before punctuation)."""
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())
    return re.sub(r" ([,.:;])", r"\1", text)


async def test_append_previews_with_nothing_written_then_lists_with_progress_until_done(
    app: Any, world: World, db: Database, runner: JobRunner
) -> None:
    fs = world.objects["feature_set_id"]
    http = await signed_in(app, world)
    form = await http.get(f"/console/feature-sets/{fs}/listing")
    assert "<h1>Manage listing: Returns line</h1>" in form.text
    assert "Sales / Delivery / Returns" in form.text
    before = await counts(db)
    pasted = "919876500001\n+919876500002\n\n919876500001\n12ab\n"
    shown = await preview(http, fs, "append", pasted)
    assert shown.status_code == 200, shown.text
    page = text_of(shown.text)
    assert "Preview: Append on Returns line" in page
    assert "4 numbers read: 3 distinct, 1 duplicate counted once" in page
    assert "Line 5: 12ab not a phone number" in page
    assert "New 2 Listed in this set" in page
    assert "Not phone numbers 1" in page
    assert "List 2 numbers" in page and "button danger" not in shown.text
    assert await counts(db) == before  # nothing written, nothing queued

    done = await confirm(http, fs, shown)
    assert done.status_code == 303
    found = JOB_LINK.search(done.headers["location"])
    assert found is not None and found.group(1) == fs and found.group(3) is None
    assert (await states(db))["919876500001"] == ("pending", uuid.UUID(fs))
    job_page = await http.get(done.headers["location"])
    assert "Listing progress: Returns line" in job_page.text
    assert "Listing 2 numbers" in text_of(job_page.text)
    assert "Listing 2 numbers; 1 left as they are" in html.unescape(job_page.text)  # the flash
    progress_url = done.headers["location"] + "/progress"
    running = await http.get(progress_url, headers={"HX-Request": "true"})
    assert 'hx-trigger="every 1s"' in running.text and "In progress" in running.text
    await settle(runner)
    finished = await http.get(progress_url, headers={"HX-Request": "true"})
    assert "hx-trigger" not in finished.text  # polling stops
    assert "Done" in finished.text and "2 listed" in text_of(finished.text)
    assert (await states(db))["919876500002"] == ("listed", uuid.UUID(fs))
    # The result stays: the page shows it on a later visit.
    assert "2 listed" in text_of((await http.get(done.headers["location"])).text)
    await http.aclose()


async def test_rewrite_delists_what_is_not_in_the_file_after_a_red_confirmation(
    app: Any, world: World, db: Database, settings: Settings, runner: JobRunner
) -> None:
    fs = world.objects["feature_set_id"]
    await list_now(db, settings, runner, fs, numbers_of(0, 4))
    http = await signed_in(app, world)
    csv = b"name,phone_number\nAda,919876500000\nBob,919876500001\nCy,919876500009\n"
    shown = await preview(http, fs, "rewrite", file=("numbers.csv", csv, "text/csv"))
    assert shown.status_code == 200, shown.text
    page = text_of(shown.text)
    assert "3 numbers read (after the header row)" in page
    assert "New 1" in page and "Already listed 2" in page
    assert "2 numbers of Returns line are not in your list and would be delisted" in page
    assert "Rewrite Returns line?" in page
    assert '<button type="submit" class="button danger">List 1 and delist 2 numbers</button>' in shown.text
    assert "919876500002, 919876500003" in page  # what would be delisted, shown

    # The set changes between preview and confirmation: nothing happens, the new preview is shown.
    before = await states(db)
    stale = await confirm(http, fs, shown, others_digest="0" * 32)
    assert stale.status_code == 409
    assert "this feature set changed since the preview" in stale.text
    assert await states(db) == before

    done = await confirm(http, fs, shown)
    assert done.status_code == 303
    found = JOB_LINK.search(done.headers["location"])
    assert found is not None and found.group(3) is not None  # a listing and a delisting job
    after = await states(db)
    assert after["919876500009"][0] == "pending"
    assert after["919876500002"][0] == after["919876500003"][0] == "delisting"
    await settle(runner)
    result = text_of((await http.get(done.headers["location"])).text)
    assert "Listing 1 number" in result and "1 listed" in result
    assert "Delisting 2 numbers" in result and "2 delisted" in result
    final = {number: status for number, (status, _fs) in (await states(db)).items()}
    assert final == {
        "919876500000": "listed",
        "919876500001": "listed",
        "919876500009": "listed",
        "919876500002": "delisted",
        "919876500003": "delisted",
    }
    await http.aclose()


async def test_delist_from_a_text_file(
    app: Any, world: World, db: Database, settings: Settings, runner: JobRunner
) -> None:
    fs = world.objects["feature_set_id"]
    await list_now(db, settings, runner, fs, numbers_of(0, 3))
    http = await signed_in(app, world)
    listing = await http.get(f"/console/feature-sets/{fs}/listing?mode=delist")
    assert 'id="mode-delist" name="mode" value="delist" aria-describedby="mode-delist-help" checked' in listing.text
    shown = await preview(http, fs, "delist", file=("gone.txt", b"919876500000\r\n919876500007\r\n", "text/plain"))
    page = text_of(shown.text)
    assert "Delisted 1" in page and "Nothing to delist 1" in page
    assert '<button type="submit" class="button danger">Delist 1 number</button>' in shown.text
    done = await confirm(http, fs, shown)
    assert done.status_code == 303
    await settle(runner)
    assert (await states(db))["919876500000"][0] == "delisted"
    assert (await states(db))["919876500001"][0] == "listed"
    await http.aclose()


async def test_ten_thousand_numbers_upload_preview_and_list(
    app: Any, world: World, db: Database, runner: JobRunner
) -> None:
    fs = world.objects["feature_set_id"]
    http = await signed_in(app, world)
    many = [f"4479{i:08d}" for i in range(10_000)]
    body = ("phone_number\n" + "\n".join(many) + "\n").encode()
    shown = await preview(http, fs, "append", file=("many.csv", body, "text/csv"))
    assert shown.status_code == 200, shown.text[:2000]
    assert "New 10,000" in text_of(shown.text)
    assert "the first 100" in shown.text  # the page shows a sample, and carries every number
    assert len(hidden(shown.text, "numbers").splitlines()) == 10_000
    done = await confirm(http, fs, shown)
    assert done.status_code == 303
    await settle(runner)
    assert "10,000 listed" in text_of((await http.get(done.headers["location"])).text)
    # One more than the API takes: refused with the API's words, next to the file field.
    too_many = await preview(http, fs, "append", file=("more.csv", body + b"447999999999\n", "text/csv"))
    assert too_many.status_code == 400
    assert 'id="file-error">phone_numbers must contain between 1 and 10000 numbers</p>' in too_many.text
    await http.aclose()


async def test_bad_input_is_shown_next_to_its_field_and_kept(app: Any, world: World, db: Database) -> None:
    fs = world.objects["feature_set_id"]
    http = await signed_in(app, world)
    before = await counts(db)
    nothing = await preview(http, fs, "append", "  \n")
    assert nothing.status_code == 400
    assert 'id="numbers-error">phone_numbers is required: paste numbers or choose a file</p>' in nothing.text
    both = await preview(http, fs, "append", "919876500001", file=("a.txt", b"919876500002\n", "text/plain"))
    assert 'id="numbers-error">paste numbers or choose a file, not both</p>' in both.text
    assert ">919876500001</textarea>" in both.text  # what was typed stays
    binary = await preview(http, fs, "append", file=("a.png", b"\x89PNG\x00\x00", "image/png"))
    assert 'id="file-error">file must be a CSV or text file (this one is binary)</p>' in binary.text
    header = await preview(http, fs, "append", file=("a.csv", b"name,city\nAda,Pune\n", "text/csv"))
    assert "line 1: the header names no number column; call it phone_number" in header.text
    mode = await preview(http, fs, "replace-all", "919876500001")
    assert mode.status_code == 400 and 'id="mode-error">choose what to do' in mode.text
    hostile = await preview(http, fs, "append", '<script>alert(1)</script>\n"><img src=x>')
    assert hostile.status_code == 200
    assert "<script>alert(1)</script>" not in hostile.text and "&lt;script&gt;" in hostile.text
    assert "<img src=x>" not in hostile.text
    assert "Nothing to change" in hostile.text
    # A confirmation without a preview (or with a made-up mode) changes nothing.
    csrf = csrf_of((await http.get(f"/console/feature-sets/{fs}/listing")).text)
    empty = await http.post(f"/console/feature-sets/{fs}/listing", data={"csrf_token": csrf, "mode": "append"})
    assert empty.status_code == 303 and empty.headers["location"].endswith("/listing")
    made_up = await http.post(
        f"/console/feature-sets/{fs}/listing", data={"csrf_token": csrf, "mode": "x", "numbers": "919876500001"}
    )
    assert made_up.status_code == 303
    assert await counts(db) == before
    await http.aclose()


@pytest.mark.parametrize("settings_overrides", [{"feature_set_number_limit": 2}], indirect=True)
async def test_a_cap_is_shown_before_anything_is_written(app: Any, world: World, db: Database) -> None:
    fs = world.objects["feature_set_id"]
    http = await signed_in(app, world)
    shown = await preview(http, fs, "append", "\n".join(numbers_of(0, 3)))
    assert shown.status_code == 400
    assert 'role="alert">feature set number limit exceeded</p>' in shown.text
    assert await counts(db) == (0, 1, 0)  # only the world's finished job
    await http.aclose()


@pytest.mark.parametrize(
    "settings_overrides", [{"number_verifier": "tests.numbers.verifiers:fail_ending_in_9"}], indirect=True
)
async def test_failures_are_listed_with_their_reason(app: Any, world: World, db: Database, runner: JobRunner) -> None:
    fs = world.objects["feature_set_id"]
    http = await signed_in(app, world)
    shown = await preview(http, fs, "append", "919876500001\n919876500009\n919876500019")
    done = await confirm(http, fs, shown)
    await settle(runner)
    result = await http.get(done.headers["location"])
    page = text_of(result.text)
    assert "1 listed, 2 failed" in page
    assert "list rejected by verification: 2" in page
    assert "919876500009 list rejected by verification" in page
    assert f"/console/numbers?feature_set={fs}&amp;status=failed" in result.text
    await http.aclose()


async def test_an_archived_set_can_be_delisted_from_but_not_listed_on(
    app: Any, world: World, db: Database, settings: Settings, runner: JobRunner
) -> None:
    fs = world.objects["feature_set_id"]
    await list_now(db, settings, runner, fs, numbers_of(0, 1))
    async with db.transaction() as session:
        await numbers.set_feature_set_status(
            session, account_id=world.account_id, feature_set_id=uuid.UUID(fs), status="archived"
        )
    http = await signed_in(app, world)
    assert "This feature set is archived" in (await http.get(f"/console/feature-sets/{fs}/listing")).text
    refused = await preview(http, fs, "append", "919876500005")
    assert refused.status_code == 400 and 'role="alert">feature set is archived</p>' in refused.text
    allowed = await preview(http, fs, "delist", "919876500000")
    assert allowed.status_code == 200 and "Delisted 1" in text_of(allowed.text)
    await http.aclose()


async def test_owners_reach_only_the_sets_of_their_subtree(
    app: Any, world: World, db: Database, settings: Settings, runner: JobRunner
) -> None:
    async with db.transaction() as session:
        operation, _ = await numbers.create_operation(
            session,
            account_id=world.account_id,
            department_id=world.nodes["support"],
            name="Helpdesk",
            calling_operation_name="Support",
        )
        process = await numbers.create_process(
            session, account_id=world.account_id, operation_id=operation.id, name="Tickets"
        )
        other = await numbers.create_feature_set(
            session,
            account_id=world.account_id,
            process_id=process.id,
            label_id=uuid.UUID(world.objects["label_id"]),
            name="Support line",
        )
    await list_now(db, settings, runner, str(other.id), numbers_of(50, 1))
    async with db.session() as session:
        job_id = await session.scalar(select(NumberJob.id).where(NumberJob.feature_set_id == other.id))
    mine = world.objects["feature_set_id"]
    for role in ("department_owner", "operation_owner", "process_owner"):
        http = await signed_in(app, world, role)
        assert (await http.get(f"/console/feature-sets/{mine}/listing")).status_code == 200
        csrf = csrf_of((await http.get(f"/console/feature-sets/{mine}/listing")).text)
        # Guessing the other set's URLs: the same 404 as for an id that does not exist, and nothing changes.
        for path in (
            f"/console/feature-sets/{other.id}/listing",
            f"/console/feature-sets/{other.id}/listing/jobs/{job_id}",
        ):
            assert (await http.get(path)).status_code == 404, (role, path)
        data = {"csrf_token": csrf, "mode": "delist", "numbers": numbers_of(50, 1)[0]}
        for path in (f"/console/feature-sets/{other.id}/listing/preview", f"/console/feature-sets/{other.id}/listing"):
            assert (await http.post(path, data=data)).status_code == 404, (role, path)
        # Their own set's page with the other set's job id is no way in either.
        assert (await http.get(f"/console/feature-sets/{mine}/listing/jobs/{job_id}")).status_code == 404
        await http.aclose()
    assert (await states(db))[numbers_of(50, 1)[0]][0] == "listed"
    outsider = await signed_in(app, world, "outsider")  # the Support department's owner
    assert (await outsider.get(f"/console/feature-sets/{other.id}/listing")).status_code == 200
    assert (await outsider.get(f"/console/feature-sets/{mine}/listing")).status_code == 404
    await outsider.aclose()


async def test_numbers_busy_with_a_job_are_held_and_a_confirmation_is_checked_again(
    app: Any, world: World, db: Database, settings: Settings, runner: JobRunner
) -> None:
    fs = world.objects["feature_set_id"]
    async with db.transaction() as session:
        feature_set = await numbers.feature_set_of(session, world.account_id, uuid.UUID(fs))
        await numbers.list_numbers_into(
            session, settings, feature_set=feature_set, raw_numbers=["919876500001"], created_by_email="api@x.test"
        )
    http = await signed_in(app, world)
    shown = await preview(http, fs, "delist", "919876500001")
    page = text_of(shown.text)
    assert "Busy 1" in page and "1 number waits for a job already running" in page
    done = await confirm(http, fs, shown)
    assert done.status_code == 303 and done.headers["location"] == f"/console/feature-sets/{fs}/listing"
    listing = await http.get(done.headers["location"])
    assert "Delisting 0 numbers; 1 waits for a running job" in html.unescape(listing.text)
    await settle(runner)  # the listing job ends, then the held delisting runs; its own job follows
    await settle(runner)
    assert (await states(db))["919876500001"][0] == "delisted"
    # A confirmation is checked like a request: more numbers than the API takes change nothing.
    csrf = csrf_of(listing.text)
    too_many = "\n".join(f"4479{i:08d}" for i in range(10_001))
    refused = await http.post(
        f"/console/feature-sets/{fs}/listing", data={"csrf_token": csrf, "mode": "append", "numbers": too_many}
    )
    assert refused.status_code == 303
    after = await http.get(refused.headers["location"])
    assert "Nothing changed: phone_numbers must contain between 1 and 10000 numbers" in html.unescape(after.text)
    assert len(await states(db)) == 1
    await http.aclose()
