"""The first-run setup (issue 11 point 7): calling operation -> process -> feature set -> caller-ID label -> numbers.

Each step calls the service the rest of the console calls (``numbers.organisation``, ``numbers.tree``,
``labels.service``, ``numbers.preview``); this module only remembers, per account, which steps are done or skipped
and what they made. A feature set needs a label, which step 4 gives: step 3 keeps what was typed as a draft, checked
by the same rules, and step 4 creates the set. A step's object that was archived or removed since (or an id that is
not the account's) makes that step to do again; nothing is taken from the stored state without looking it up.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from callerid import clock
from callerid.accounts.permissions import Actor
from callerid.config import Settings
from callerid.db.write import insert_unless_exists
from callerid.failures import InvalidInput, NotFound
from callerid.labels import service as labels
from callerid.labels.models import Label
from callerid.labels.shared import get_label
from callerid.numbers import nodes, organisation, tree
from callerid.numbers.checks import NumbersError
from callerid.numbers.models import ARCHIVED, FeatureSet
from callerid.numbers.nodes import DEPARTMENT, OPERATION, PROCESS, NodeRef, TreeNode
from callerid.setup.models import SetupProgress

OPERATION_STEP = "operation"
PROCESS_STEP = "process"
FEATURE_SET_STEP = "feature_set"
LABEL_STEP = "label"
NUMBERS_STEP = "numbers"
STEPS = (OPERATION_STEP, PROCESS_STEP, FEATURE_SET_STEP, LABEL_STEP, NUMBERS_STEP)
STEP_TITLES = {
    OPERATION_STEP: "Calling operation",
    PROCESS_STEP: "Process",
    FEATURE_SET_STEP: "Feature set",
    LABEL_STEP: "Caller-ID label",
    NUMBERS_STEP: "List numbers",
}
DONE = "done"
SKIPPED = "skipped"


class SetupError(InvalidInput):
    """A step's input that breaks a rule; ``field`` names the form input it is about."""


@dataclass
class Draft:
    """Step 3's feature set as typed, until step 4 gives it a label."""

    process: TreeNode
    name: str
    description: str
    call_reason: str | None


@dataclass
class Progress:
    """Where an account's setup stands, every object looked up again in the account."""

    states: dict[str, str]  # step -> done / skipped; a step missing is to do
    operation: TreeNode | None = None
    process: TreeNode | None = None
    draft: Draft | None = None
    feature_set: FeatureSet | None = None
    label: Label | None = None
    jobs: list[uuid.UUID] = field(default_factory=list)
    started: bool = False
    dismissed: bool = False
    finished: bool = False

    @property
    def current(self) -> str | None:
        """The first step neither done nor skipped (None: every step is, the summary is next)."""
        return next((step for step in STEPS if step not in self.states), None)

    def left(self) -> list[str]:
        """The steps still to do or skipped, in order: what Home lists."""
        return [step for step in STEPS if self.states.get(step) != DONE]


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


async def _live_node(session: AsyncSession, account_id: uuid.UUID, kind: str, raw: Any) -> TreeNode | None:
    node_id = _uuid(raw)
    if node_id is None:
        return None
    node = await nodes.find_node(session, account_id, NodeRef(kind, node_id))
    return node if node is not None and not node.archived else None


async def _live_feature_set(session: AsyncSession, account_id: uuid.UUID, raw: Any) -> FeatureSet | None:
    feature_set_id = _uuid(raw)
    if feature_set_id is None:
        return None
    found = await session.get(FeatureSet, feature_set_id)
    return found if found is not None and found.account_id == account_id and found.status != ARCHIVED else None


async def progress(session: AsyncSession, account_id: uuid.UUID) -> Progress:
    row = await session.get(SetupProgress, account_id)
    state: dict[str, Any] = dict(row.state) if row is not None else {}
    states = {k: v for k, v in dict(state.get("steps") or {}).items() if k in STEPS and v in (DONE, SKIPPED)}
    ids = dict(state.get("ids") or {})
    found = Progress(
        states=states,
        operation=await _live_node(session, account_id, OPERATION, ids.get(OPERATION_STEP)),
        process=await _live_node(session, account_id, PROCESS, ids.get(PROCESS_STEP)),
        feature_set=await _live_feature_set(session, account_id, ids.get(FEATURE_SET_STEP)),
        jobs=[job for job in (_uuid(raw) for raw in state.get("jobs") or []) if job is not None],
        started=bool(states),
        dismissed=row is not None and row.dismissed_at is not None,
        finished=row is not None and row.finished_at is not None,
    )
    label_id = _uuid(ids.get(LABEL_STEP))
    found.label = await get_label(session, account_id, label_id) if label_id is not None else None
    draft = state.get("draft")
    if isinstance(draft, dict) and found.feature_set is None:
        process = await _live_node(session, account_id, PROCESS, draft.get("process"))
        if process is not None:
            reason = draft.get("call_reason")
            found.draft = Draft(
                process,
                str(draft.get("name") or ""),
                str(draft.get("description") or ""),
                reason if isinstance(reason, str) else None,
            )
    # A step done whose object is gone (archived, removed) is to do again.
    if states.get(OPERATION_STEP) == DONE and found.operation is None:
        del states[OPERATION_STEP]
    if states.get(PROCESS_STEP) == DONE and found.process is None:
        del states[PROCESS_STEP]
    if states.get(FEATURE_SET_STEP) == DONE and found.feature_set is None and found.draft is None:
        del states[FEATURE_SET_STEP]
    waiting_for_label = states.get(FEATURE_SET_STEP) == DONE and found.feature_set is None
    if states.get(LABEL_STEP) == DONE and (found.label is None or waiting_for_label):
        del states[LABEL_STEP]
    if states.get(NUMBERS_STEP) == DONE and found.feature_set is None:
        del states[NUMBERS_STEP]
    return found


async def _save(
    session: AsyncSession,
    actor: Actor,
    *,
    step: str | None = None,
    status: str | None = None,
    ids: dict[str, str] | None = None,
    draft: dict[str, Any] | None = None,
    clear_draft: bool = False,
    jobs: list[uuid.UUID] | None = None,
) -> None:
    """Record a step's outcome. The JSON is replaced as a whole (SQLAlchemy does not see changes made inside it)."""
    now = clock.now()
    row = await session.get(SetupProgress, actor.account_id)
    if row is None:
        # Two admins' first steps at once: one inserts the row, the other (PostgreSQL waits for it) finds it.
        first = {"account_id": actor.account_id, "state": {}, "updated_by_email": actor.email}
        values = {**first, "created_at": now, "updated_at": now}
        await insert_unless_exists(session, SetupProgress.__table__, values, unique=["account_id"])
        row = await session.get(SetupProgress, actor.account_id, populate_existing=True)
        assert row is not None
    state = dict(row.state or {})
    if step is not None and status is not None:
        state["steps"] = {**dict(state.get("steps") or {}), step: status}
    if ids:
        state["ids"] = {**dict(state.get("ids") or {}), **ids}
    if draft is not None:
        state["draft"] = draft
    if clear_draft:
        state.pop("draft", None)
    if jobs is not None:
        state["jobs"] = [str(job) for job in jobs]
    row.state = state
    row.dismissed_at = None  # working on it again: Home shows the card again until it is done
    row.updated_by_email = actor.email
    row.updated_at = now
    await session.flush()


def _again(exc: InvalidInput, field_name: str) -> SetupError:
    return SetupError(exc.message, field_name)


# --- step 1: calling operation ------------------------------------------------------------------------------------


async def create_operation(
    session: AsyncSession,
    actor: Actor,
    *,
    department_name: str,
    operation_name: str,
    calling_operation_id: uuid.UUID | None,
) -> TreeNode:
    """An operation in the department of that name (the account's one in use, else a new department), bound to a
    catalogue entry; both in the caller's transaction, so a refused operation leaves no department behind."""
    wanted = department_name.strip().lower()
    department = next(
        (
            node
            for node in await nodes.account_tree(session, actor.account_id)
            if node.ref.kind == DEPARTMENT and not node.archived and node.name.lower() == wanted and wanted
        ),
        None,
    )
    if department is None:
        try:
            department = await organisation.add_node(session, actor, parent_id=None, name=department_name)
        except NumbersError as exc:
            raise _again(exc, "department") from None
    try:
        operation = await organisation.add_node(
            session,
            actor,
            parent_id=department.ref.id,
            name=operation_name,
            calling_operation_id=calling_operation_id,
        )
    except NumbersError as exc:
        raise _again(exc, "calling_operation" if exc.field == "calling_operation" else "operation") from None
    await _save(session, actor, step=OPERATION_STEP, status=DONE, ids={OPERATION_STEP: str(operation.ref.id)})
    return operation


async def _chosen_node(session: AsyncSession, actor: Actor, raw: str, kind: str, field_name: str) -> TreeNode:
    """A node of the account, of this kind, in use; anything else (another account's id) is not on the list."""
    node_id = _uuid(raw.strip())
    try:
        node = None if node_id is None else await organisation.visible_node(session, actor, node_id)
    except NotFound:
        node = None
    if node is None or node.ref.kind != kind or node.archived:
        raise SetupError(f"choose {'an' if kind == OPERATION else 'a'} {kind} from the list", field_name)
    return node


async def pick_operation(session: AsyncSession, actor: Actor, raw_id: str) -> TreeNode:
    operation = await _chosen_node(session, actor, raw_id, OPERATION, "existing_operation")
    await _save(session, actor, step=OPERATION_STEP, status=DONE, ids={OPERATION_STEP: str(operation.ref.id)})
    return operation


# --- step 2: process ------------------------------------------------------------------------------------------------


async def create_process(session: AsyncSession, actor: Actor, *, operation_id: str, name: str) -> TreeNode:
    operation = await _chosen_node(session, actor, operation_id, OPERATION, "operation")
    try:
        process = await organisation.add_node(session, actor, parent_id=operation.ref.id, name=name)
    except NumbersError as exc:
        raise _again(exc, "name") from None
    await _save(session, actor, step=PROCESS_STEP, status=DONE, ids={PROCESS_STEP: str(process.ref.id)})
    return process


async def pick_process(session: AsyncSession, actor: Actor, raw_id: str) -> TreeNode:
    process = await _chosen_node(session, actor, raw_id, PROCESS, "existing_process")
    await _save(session, actor, step=PROCESS_STEP, status=DONE, ids={PROCESS_STEP: str(process.ref.id)})
    return process


# --- step 3: the feature set, kept as a draft -----------------------------------------------------------------------

FEATURE_SET_FIELDS = (
    ("feature set name", "name"),
    ("description", "description"),
    ("call_reason", "call_reason"),
)


async def save_draft(
    session: AsyncSession, actor: Actor, *, process_id: str, name: str, description: str, call_reason: str
) -> Draft:
    """What step 4 will create, checked now by ``numbers.tree``'s rules (an empty name: ``New Feature Set-<n>``)."""
    process = await _chosen_node(session, actor, process_id, PROCESS, "process")
    reason = call_reason or None
    try:
        tree.check_feature_set_text(name, description, reason)
    except NumbersError as exc:
        lowered = exc.message.lower()
        raise _again(exc, next((f for prefix, f in FEATURE_SET_FIELDS if lowered.startswith(prefix)), "form")) from None
    values = {"process": str(process.ref.id), "name": name, "description": description, "call_reason": reason}
    await _save(session, actor, step=FEATURE_SET_STEP, status=DONE, draft=values)
    return Draft(process, name, description, reason)


# --- step 4: the label; then the feature set exists ----------------------------------------------------------------


async def _use_label(session: AsyncSession, actor: Actor, label: Label) -> FeatureSet | None:
    """Record the label and, when step 3 left a draft, create the feature set with it (``numbers.tree``)."""
    current = await progress(session, actor.account_id)
    created: FeatureSet | None = None
    ids = {LABEL_STEP: str(label.id)}
    if current.draft is not None:
        draft = current.draft
        try:
            created = await tree.create_feature_set(
                session,
                account_id=actor.account_id,
                process_id=draft.process.ref.id,
                label_id=label.id,
                name=draft.name or None,
                description=draft.description,
                call_reason=draft.call_reason,
                created_by_email=actor.email,
            )
        except NumbersError as exc:
            raise SetupError(f"the feature set of step 3 could not be created: {exc.message}", "form") from None
        ids[FEATURE_SET_STEP] = str(created.id)
    await _save(session, actor, step=LABEL_STEP, status=DONE, ids=ids, clear_draft=created is not None)
    return created


async def create_label(
    session: AsyncSession,
    settings: Settings,
    actor: Actor,
    *,
    name: str,
    logo: bytes,
    label_type: str,
    category: int | None,
    sub_category: int | None,
) -> tuple[Label, FeatureSet | None]:
    label = await labels.create_label(
        session,
        settings,
        account_id=actor.account_id,
        name=name,
        logo=logo,
        label_type=label_type,
        category=category,
        sub_category=sub_category,
        created_by_email=actor.email,
        require_category=True,
    )
    return label, await _use_label(session, actor, label)


async def pick_label(session: AsyncSession, actor: Actor, raw_id: str) -> tuple[Label, FeatureSet | None]:
    label_id = _uuid(raw_id.strip())
    label = None if label_id is None else await get_label(session, actor.account_id, label_id)
    if label is None:
        raise SetupError("choose a label from the list", "existing_label")
    return label, await _use_label(session, actor, label)


# --- step 5, skipping, starting again -------------------------------------------------------------------------------


async def record_listing(session: AsyncSession, actor: Actor, jobs: list[uuid.UUID]) -> None:
    await _save(session, actor, step=NUMBERS_STEP, status=DONE, jobs=jobs)


async def skip(session: AsyncSession, actor: Actor, step: str) -> None:
    if step not in STEPS:
        raise SetupError("no such step", "form")
    await _save(session, actor, step=step, status=SKIPPED)


async def start_again(session: AsyncSession, actor: Actor) -> None:
    """Forget the steps (what they created stays: it is the account's now)."""
    row = await session.get(SetupProgress, actor.account_id)
    if row is not None:
        row.state = {}
        row.dismissed_at = None
        row.finished_at = None
        row.updated_by_email = actor.email
        row.updated_at = clock.now()
        await session.flush()


async def _mark(session: AsyncSession, actor: Actor, column: str) -> None:
    await _save(session, actor)
    row = await session.get(SetupProgress, actor.account_id)
    assert row is not None
    setattr(row, column, clock.now())
    await session.flush()


async def dismiss(session: AsyncSession, actor: Actor) -> None:
    """Home stops offering the setup (it stays at /console/setup)."""
    await _mark(session, actor, "dismissed_at")


async def finish(session: AsyncSession, actor: Actor) -> None:
    await _mark(session, actor, "finished_at")


# --- what Home shows --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HomeCard:
    started: bool
    left: list[str]  # titles of the steps not done


async def home_card(session: AsyncSession, account_id: uuid.UUID) -> HomeCard | None:
    """The "Set up your account" card: while the account has no feature set in use and setup is not dismissed."""
    sets = await session.scalar(
        select(func.count()).where(FeatureSet.account_id == account_id, FeatureSet.status != ARCHIVED)
    )
    if sets:
        return None
    current = await progress(session, account_id)
    if current.dismissed:
        return None
    return HomeCard(current.started, [STEP_TITLES[step] for step in current.left()])
