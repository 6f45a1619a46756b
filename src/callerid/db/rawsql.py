"""SQLAlchemy statements compiled once and run straight on a DBAPI cursor (the SQLite hot paths).

Why not ``connection.execute(statement)``: for a one-row indexed SELECT on SQLite, SQLAlchemy's execution
machinery (compiled-cache lookup, parameter construction, result metadata, row processing) costs about ten
times the query itself (~70 µs against ~7 µs measured). Here a statement is compiled once with SQLAlchemy's
own compiler, and its own bind and result processors convert values, so SQL text and column types stay
exactly SQLAlchemy's; only the per-call bookkeeping is skipped.

Only plain statements qualify: no expanding ``IN`` parameters and no escaped bind names
(``RawStatement.compile`` returns None for the others, and callers fall back to SQLAlchemy).
"""

from __future__ import annotations

import re
from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.types import NullType

_REQUIRED = object()
_NOT_SHARED = object()


def _converted(processor: Callable[[Any], Any] | None, value: Any) -> Any:
    return processor(value) if processor is not None and value is not None else value


CONVERTED_ROWS_KEPT = 4096  # per statement


class RawStatement:
    """One statement compiled for one dialect: its SQL text, parameter order and value conversions."""

    __slots__ = ("_binds", "_columnar", "_converted", "_multi_row", "_result", "insert_parts", "row_type", "sql")

    def __init__(
        self,
        sql: str,
        binds: list[tuple[str, Callable[[Any], Any] | None, Any]],
        result: list[Callable[[Any], Any] | None] | None,
        row_type: Any,
        insert_parts: InsertParts | None = None,
    ):
        self.sql = sql
        # PostgreSQL: a plain INSERT's parts, to run it for many rows as one statement (``columnar``).
        self.insert_parts = insert_parts
        self._columnar: dict[frozenset[str], tuple[str, list[int], list[int]]] = {}
        self._multi_row: dict[int, str] = {}
        self._binds = binds
        self._result = result
        self.row_type = row_type
        # Converted single rows by their raw values: a hot point read returns the same few rows over and over
        # (a token's, a label's), and converting them (JSON, UUIDs, datetimes) cost more than the query.
        self._converted: dict[tuple[Any, ...], Any] = {}

    @classmethod
    def compile(
        cls, statement: ClauseElement, dialect: Dialect, column_keys: Sequence[str] | None = None
    ) -> RawStatement | None:
        compiled: Any = statement.compile(dialect=dialect, column_keys=list(column_keys) if column_keys else None)
        if compiled.positiontup is None or getattr(compiled, "escaped_bind_names", None):
            return None
        binds: list[tuple[str, Callable[[Any], Any] | None, Any]] = []
        for name in compiled.positiontup:
            bind = compiled.binds[name]
            if bind.expanding or getattr(bind, "literal_execute", False):
                return None
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            default = _REQUIRED if bind.required or bind.callable is not None else bind.value
            if column_keys is not None and name not in column_keys:
                # A column SQLAlchemy adds to an INSERT for its Python-side default: its default, if a plain value
                # (a callable one must be given: it is evaluated per row, which this fast path does not do).
                column = statement.table.c.get(name)  # type: ignore[attr-defined]
                column_default = getattr(column, "default", None)
                scalar = column_default is not None and column_default.is_scalar
                default = column_default.arg if scalar else _REQUIRED
            binds.append((name, processor, default))
        result = None
        row_type = None
        # What comes back: a SELECT's columns, or a DML statement's RETURNING columns.
        if getattr(statement, "is_select", False):
            selected = statement.selected_columns
        elif getattr(statement, "is_dml", False) and len(statement.exported_columns):
            selected = statement.exported_columns
        else:
            selected = None
        if selected is not None:
            columns = list(selected)
            result = [column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns]
            row_type = namedtuple("Row", list(selected.keys()), rename=True)  # type: ignore[misc]
        parts = _insert_parts(statement, compiled, dialect) if column_keys is not None else None
        return cls(compiled.string, binds, result, row_type, parts)

    def parameters(self, values: Mapping[str, Any] | None) -> tuple[Any, ...]:
        """The DBAPI parameter tuple for ``values`` (by bind name; literals of the statement filled in)."""
        out = []
        for name, processor, default in self._binds:
            if values is not None and name in values:
                value = values[name]
            elif default is _REQUIRED:
                raise KeyError(f"missing value for bind parameter {name!r}")
            else:
                value = default
            out.append(processor(value) if processor is not None and value is not None else value)
        return tuple(out)

    def parameters_many(
        self, rows: Sequence[Mapping[str, Any]], shared: Mapping[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        """Parameter tuples for many rows; values in ``shared`` (the same for every row, e.g. a batch id) are
        converted once instead of once per row."""
        shared = shared or {}
        plan = [
            (name, processor, default, _NOT_SHARED if name not in shared else _converted(processor, shared[name]))
            for name, processor, default in self._binds
        ]
        out = []
        for row in rows:  # one pass per row, values in parameter order (the R2 group commit's hot loop)
            values = []
            for name, processor, default, fixed in plan:
                if fixed is not _NOT_SHARED:
                    values.append(fixed)
                    continue
                value = row.get(name, default)
                if value is _REQUIRED:
                    raise KeyError(f"missing value for bind parameter {name!r}")
                values.append(processor(value) if processor is not None and value is not None else value)
            out.append(tuple(values))
        return out

    def columnar(
        self, rows: Sequence[Mapping[str, Any]], shared: Mapping[str, Any] | None = None
    ) -> tuple[str, list[Any]] | None:
        """PostgreSQL: this plain INSERT for ``rows`` as one statement and its arguments (an array per parameter that
        differs between rows, the ``shared`` values once), or None where it has no such form."""
        if self.insert_parts is None:
            return None
        names = frozenset(shared or ())
        form = self._columnar.get(names)
        if form is None:
            positions = [index for index, (name, _, _) in enumerate(self._binds) if name in names]
            per_row = [index for index in range(len(self._binds)) if index not in positions]
            sql = self.insert_parts.columnar(frozenset(positions))
            form = self._columnar[names] = (sql, per_row, positions)
        sql, per_row, positions = form
        tuples = self.parameters_many(rows, shared)
        columns = list(zip(*tuples, strict=True))
        return sql, [list(columns[index]) for index in per_row] + [tuples[0][index] for index in positions]

    def for_rows(
        self, rows: Sequence[Mapping[str, Any]], shared: Mapping[str, Any] | None = None
    ) -> tuple[str, list[Any]] | None:
        """PostgreSQL: this INSERT for ``rows`` as one statement and its arguments: the plain statement for one row,
        the column arrays (``columnar``) for more, or for an upsert a multi-row VALUES (``multi_row``); None
        where many rows have no such form."""
        if len(rows) == 1:
            return self.sql.partition(" RETURNING ")[0], list(self.parameters({**(shared or {}), **rows[0]}))
        if self.insert_parts is not None and self.insert_parts.conflict:
            return self.multi_row(len(rows)), [value for row in self.parameters_many(rows, shared) for value in row]
        return self.columnar(rows, shared)

    def multi_row(self, count: int) -> str:
        """This single-row ``INSERT ... VALUES (...) [ON CONFLICT ...]`` as one statement inserting ``count`` rows
        (an upsert's ``ON CONFLICT`` clause stays once, after all the rows); PostgreSQL's ``$n`` parameters numbered
        on row by row (SQLite's ``?`` need nothing). Built once per count.

        PostgreSQL runs an upsert of many rows this way, not as column arrays like a plain INSERT: it plans
        ``SELECT ... FROM unnest(...)`` with a subquery per row (the figures' feature set, ``analytics.counting``)
        afresh at every execution (it finds a custom plan cheaper than the generic one), which cost an R2 group of 8
        keys 300 us of PostgreSQL's CPU against 190 us for these VALUES (PostgreSQL 15; issue 13's note of stop 22).
        """
        sql = self._multi_row.get(count)
        if sql is None:
            # PostgreSQL, no string literals (``insert_parts``): every $n is a parameter; the RETURNING of the key
            # SQLAlchemy adds by itself is left out, as in ``for_rows``'s one row (nothing reads it).
            numbered = self.insert_parts is not None
            body, on_conflict, tail = (self.sql.partition(" RETURNING ")[0] if numbered else self.sql).partition(
                " ON CONFLICT "
            )
            head, _, values = body.rpartition(" VALUES ")
            values = values.strip()
            if not head or not values.startswith("(") or not values.endswith(")"):
                raise ValueError("not a single-row INSERT ... VALUES statement")
            width = len(self._binds)
            rows = ", ".join(
                PLACEHOLDER.sub(lambda match: f"${int(match.group(1)) + row * width}", values) if numbered else values  # noqa: B023
                for row in range(count)
            )
            sql = self._multi_row[count] = f"{head} VALUES {rows}" + (f"{on_conflict}{tail}" if on_conflict else "")
        return sql

    def rows(self, raw_rows: list[tuple[Any, ...]]) -> list[Any]:
        """DBAPI rows -> named rows with SQLAlchemy's result conversions applied.

        Rows may be shared between calls (see ``_converted``): never mutate a value taken from one.
        """
        if len(raw_rows) == 1:
            raw = raw_rows[0]
            try:
                row = self._converted.get(raw)
            except TypeError:  # a driver that decodes JSON itself (asyncpg): not hashable, not kept
                return [self._convert(raw)]
            if row is None:
                if len(self._converted) >= CONVERTED_ROWS_KEPT:
                    self._converted.clear()
                row = self._converted[raw] = self._convert(raw)
            return [row]
        return [self._convert(raw) for raw in raw_rows]

    def _convert(self, raw: Sequence[Any]) -> Any:
        processors = self._result
        assert processors is not None and self.row_type is not None
        return self.row_type._make(
            [v if proc is None or v is None else proc(v) for proc, v in zip(processors, raw, strict=True)]
        )


_INSERT = re.compile(r"^INSERT INTO (\S+) \(([^()]*)\) VALUES \((.*)\)$", re.DOTALL)
PLACEHOLDER = re.compile(r"\$(\d+)")


@dataclass(frozen=True)
class InsertParts:
    """PostgreSQL: a one-row ``INSERT INTO t (columns) VALUES (expressions) [ON CONFLICT ...]`` (no RETURNING)
    taken apart, to run it for many rows as one statement (``columnar``) or as part of a bigger one
    (``db.writers``)."""

    table: str
    columns: str
    values: str  # the expressions, with $1, $2, ... for the parameters in order
    types: tuple[str, ...]  # each parameter's PostgreSQL type
    conflict: str = ""  # an upsert's " ON CONFLICT ..." clause (no parameters in it), else empty

    @property
    def sql(self) -> str:
        return f"INSERT INTO {self.table} ({self.columns}) VALUES ({self.values}){self.conflict}"

    def columnar(self, shared: frozenset[int]) -> str:
        """The INSERT for many rows given as one array per parameter (``unnest``), parameters numbered in order;
        parameters at the ``shared`` positions (0-based; the same value for every row) stay single values.

        asyncpg's ``executemany`` sends, and the server runs, the statement once per row: for a batch of 500 records
        that was most of the write's CPU on both sides, and arrays are encoded in C."""
        per_row = [index for index in range(len(self.types)) if index not in shared]
        number = {index: position for position, index in enumerate([*per_row, *sorted(shared)], start=1)}

        def renamed(match: re.Match[str]) -> str:
            index = int(match.group(1)) - 1
            return f"${number[index]}" if index in shared else f"u.p{index + 1}"

        values = PLACEHOLDER.sub(renamed, self.values)
        arrays = ", ".join(f"${number[index]}::{self.types[index]}[]" for index in per_row)
        names = ", ".join(f"p{index + 1}" for index in per_row)
        selected = f"SELECT {values} FROM unnest({arrays}) AS u({names})"
        return f"INSERT INTO {self.table} ({self.columns}) {selected}{self.conflict}"


def _insert_parts(statement: Any, compiled: Any, dialect: Dialect) -> InsertParts | None:
    """The parts of a plain one-row INSERT on PostgreSQL, or None (another statement, or another database)."""
    if dialect.name != "postgresql" or not getattr(statement, "is_insert", False):
        return None
    if statement._returning:
        return None  # rows asked for (one per row given)
    # SQLAlchemy adds "RETURNING <primary key>" for an autoincrement key by itself (for the ORM); nothing reads it.
    body = compiled.string.partition(" RETURNING ")[0]
    conflict = ""
    if getattr(statement, "_post_values_clause", None) is not None:
        # An upsert: its many rows must have distinct keys (PostgreSQL updates a row at most once per statement),
        # as a multi-row VALUES would; the ON CONFLICT clause may read ``excluded`` but take no parameter.
        body, on_conflict, tail = body.partition(" ON CONFLICT ")
        if not on_conflict or "$" in tail or "'" in tail:
            return None
        conflict = on_conflict + tail
    match = _INSERT.match(body)
    if match is None or "'" in match.group(3):  # no string literals: every $n in the expressions is a parameter
        return None
    types = []
    for name in compiled.positiontup:
        type_ = compiled.binds[name].type
        if isinstance(type_, NullType):
            return None
        types.append(dialect.type_compiler_instance.process(type_.dialect_impl(dialect)))
    table, columns, values = match.groups()
    return InsertParts(table, columns, values, tuple(types), conflict)


def insert_keys(rows: Sequence[Mapping[str, Any]], shared: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The columns an INSERT of ``rows`` (and the ``shared`` values) gives: its compiled form's key."""
    return tuple(rows[0]) + tuple(key for key in (shared or {}) if key not in rows[0])


class RawStatementCache:
    """Compiled forms per statement object (statements on the hot paths are module-level constants), and per row
    shape for INSERTs (the columns given)."""

    def __init__(self, dialect: Dialect):
        self.dialect = dialect
        self._compiled: WeakKeyDictionary[Any, dict[tuple[str, ...] | None, RawStatement | None]] = WeakKeyDictionary()

    def get(self, statement: Any, column_keys: Sequence[str] | None = None) -> RawStatement | None:
        """The compiled form, or None for a statement that cannot be run raw (see the module docstring)."""
        shape = tuple(column_keys) if column_keys is not None else None
        shapes = self._compiled.get(statement)
        if shapes is None:
            shapes = self._compiled[statement] = {}
        try:
            return shapes[shape]
        except KeyError:
            compiled = shapes[shape] = RawStatement.compile(statement, self.dialect, shape)
            return compiled


class RawResult:
    """The part of SQLAlchemy's ``Result`` that the point-read callers use, over already fetched rows."""

    __slots__ = ("_rows",)

    def __init__(self, rows: list[Any]):
        self._rows = rows

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)

    def all(self) -> list[Any]:
        return list(self._rows)

    def first(self) -> Any:
        return self._rows[0] if self._rows else None

    def one_or_none(self) -> Any:
        if len(self._rows) > 1:
            raise ValueError("multiple rows where at most one was expected")
        return self.first()

    def one(self) -> Any:
        if len(self._rows) != 1:
            raise ValueError(f"{len(self._rows)} rows where exactly one was expected")
        return self._rows[0]

    def scalar(self) -> Any:
        row = self.first()
        return None if row is None else row[0]

    def scalar_one_or_none(self) -> Any:
        row = self.one_or_none()
        return None if row is None else row[0]

    def scalar_one(self) -> Any:
        return self.one()[0]

    def scalars(self) -> RawResult:
        return RawResult([row[0] for row in self._rows])
