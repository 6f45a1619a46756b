"""A list of values bound as one parameter, so that a statement with "column IN <list>" is built once.

SQLAlchemy's expanding ``IN`` renders one placeholder per value: the SQL text changes with the list's length, so
it cannot be compiled once (``db.rawsql``) nor prepared once by the driver. Here the list is one parameter:
``column IN (SELECT value FROM json_each(?))`` on SQLite (the list goes in as a JSON array) and
``column = ANY($1)`` on PostgreSQL (the list goes in as an array). Callers bind a plain Python list.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import String, bindparam, func
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.expression import ColumnClause, TableClause
from sqlalchemy.types import Boolean, TypeDecorator, TypeEngine


class ValueList(TypeDecorator[Sequence[Any]]):
    """A Python list bound as a JSON array (SQLite) or a typed array (PostgreSQL) of ``item_type``."""

    impl = String
    cache_ok = True

    def __init__(self, item_type: TypeEngine[Any]):
        super().__init__()
        self.item_type = item_type

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(ARRAY(self.item_type))
        return dialect.type_descriptor(String())

    def process_bind_param(self, value: Sequence[Any] | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if dialect.name == "postgresql":
            return list(value)
        item_processor = self.item_type.dialect_impl(dialect).bind_processor(dialect)
        if item_processor is not None:
            value = [item_processor(item) for item in value]
        return orjson.dumps(list(value), default=str).decode()


class InValues(ColumnElement[bool]):
    """``column`` is one of the values bound to ``parameter`` (see the module docstring)."""

    inherit_cache = True
    type = Boolean()
    # A condition in itself, like a comparison: without this SQLAlchemy renders "<it> = 1" on SQLite, which hides
    # the column from the planner (a full scan instead of an index search).
    _is_implicitly_boolean = True

    def __init__(self, column: ColumnElement[Any], parameter: BindParameter[Any], negate: bool = False):
        self.column = column
        self.parameter = parameter
        self.negate = negate


@compiles(InValues)
def _in_values_sqlite(element: InValues, compiler: Any, **kw: Any) -> str:
    column = compiler.process(element.column, **kw)
    parameter = compiler.process(element.parameter, **kw)
    operator = "NOT IN" if element.negate else "IN"
    return f"{column} {operator} (SELECT value FROM json_each({parameter}))"


@compiles(InValues, "postgresql")
def _in_values_postgresql(element: InValues, compiler: Any, **kw: Any) -> str:
    column = compiler.process(element.column, **kw)
    parameter = compiler.process(element.parameter, **kw)
    if element.negate:
        return f"NOT ({column} = ANY({parameter}))"
    return f"{column} = ANY({parameter})"


def in_values(column: ColumnElement[Any] | ColumnClause[Any], name: str, *, negate: bool = False) -> InValues:
    """``column IN <the list bound as name>`` (``NOT IN`` with ``negate``); the items have the column's type."""
    parameter = bindparam(name, type_=ValueList(column.type))
    return InValues(column, parameter, negate)


def values_source(session: AsyncSession, name: str, values: Sequence[Any], item_type: TypeEngine[Any]) -> Any:
    """``values`` as a table of one column ``value`` (for ``INSERT ... SELECT`` over a list), bound as one parameter:
    an executemany of 10,000 rows spends most of its time binding parameters row by row."""
    if session.get_bind().dialect.name == "postgresql":
        parameter = bindparam(name, list(values), type_=ARRAY(item_type))
        return func.unnest(parameter).table_valued("value").render_derived()
    return func.json_each(bindparam(name, orjson.dumps(list(values)).decode(), type_=String)).table_valued("value")


class RowList(TypeDecorator[Sequence[Sequence[Any]]]):
    """A list of rows (tuples in ``columns`` order) bound as one JSON array of objects, keyed by column name."""

    impl = String
    cache_ok = True

    def __init__(self, columns: tuple[str, ...]):
        super().__init__()
        self.columns = columns

    def process_bind_param(self, value: Sequence[Sequence[Any]] | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        return orjson.dumps([dict(zip(self.columns, row, strict=True)) for row in value]).decode()


class RowsTable(TableClause):
    """A list of rows bound as one parameter, used as a table (see ``rows_values``)."""

    inherit_cache = False  # compiled by its own rules below; statements holding it are built once anyway

    def __init__(self, name: str, *columns: ColumnClause[Any]):
        super().__init__(name, *columns)
        self.parameter = bindparam(name, type_=RowList(tuple(column.name for column in columns)))


@compiles(RowsTable)
def _rows_table_sqlite(element: RowsTable, compiler: Any, asfrom: bool = False, **kw: Any) -> str:
    if not asfrom:
        return compiler.preparer.quote(element.name)  # type: ignore[no-any-return]
    parameter = compiler.process(element.parameter, **kw)
    extracted = ", ".join(
        f"json_extract(value, '$.{column.name}') AS {compiler.preparer.quote(column.name)}" for column in element.c
    )
    return f"(SELECT {extracted} FROM json_each({parameter})) AS {compiler.preparer.quote(element.name)}"


@compiles(RowsTable, "postgresql")
def _rows_table_postgresql(element: RowsTable, compiler: Any, asfrom: bool = False, **kw: Any) -> str:
    if not asfrom:
        return compiler.preparer.quote(element.name)  # type: ignore[no-any-return]
    parameter = compiler.process(element.parameter, **kw)
    columns = ", ".join(
        f"CAST(item ->> '{column.name}' AS {compiler.dialect.type_compiler_instance.process(column.type)}) "
        f"AS {compiler.preparer.quote(column.name)}"
        for column in element.c
    )
    # unnest(ARRAY(...)) rather than jsonb_to_recordset: the planner takes a set-returning function for 100 rows,
    # and against a table of some ten thousand rows it then joined by hashing a full scan of the table for every
    # statement; unnest of an array it cannot see is estimated at 10 rows, so each key is looked up by its index.
    items = f"unnest(ARRAY(SELECT jsonb_array_elements(CAST({parameter} AS JSONB)))) AS item"
    return f"(SELECT {columns} FROM {items}) AS {compiler.preparer.quote(element.name)}"


def rows_values(name: str, *columns: ColumnClause[Any]) -> RowsTable:
    """A table of ``columns`` whose rows are bound as one parameter ``name`` (a list of tuples in column order):
    for a statement that answers many composite keys at once, built once (``json_each`` on SQLite,
    ``jsonb_to_recordset`` on PostgreSQL). Use its columns as ``table.c.<name>``."""
    return RowsTable(name, *columns)
