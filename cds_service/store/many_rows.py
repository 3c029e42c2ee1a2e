"""Many rows into one table at once: how the card log's writer inserts.

* **SQLite.** ``executemany`` steps the database once per row, and Python's driver lets go
  of the interpreter lock around every step. The writer thread then took the lock back from
  the thread answering hook calls once per card: measured per thread under load, the writer
  used 72-101 µs of CPU a card, 33-60 µs as one ``INSERT ... VALUES (...), (...), ...`` of
  up to ``ROWS_A_STATEMENT`` rows (one step).
* **PostgreSQL.** The rows as one JSON array, one parameter, read by the server
  (``json_populate_recordset``): 0.4 ms of the writer's CPU for 213 rows against 0.9 ms for
  ``COPY ... FROM STDIN`` (psycopg formats each row in Python: 5 µs a row), 30 µs a row for
  ``executemany``. The writer holds the interpreter lock for that time, and a hook call
  served meanwhile waits for it (the card log's share of the alerting tail). Rows with a
  value JSON cannot carry as the column's own text (a column whose type processes its
  value first, such as feedback's JSON column) go by ``COPY``.
* Any other driver: SQLAlchemy's ``executemany``.

Many values to look for go the same way (``one_of``): as one parameter, a JSON array the
database reads into rows, not as an ``IN`` list of one parameter each.

Values go through each column type's own bind processing for the dialect (as SQLAlchemy's
``insert`` does), so a row reads back the same whichever way it was written (tested on both
databases). Errors are SQLAlchemy's (an ``IntegrityError`` for a duplicate), whichever way.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from functools import lru_cache
from operator import itemgetter
from typing import Any

import orjson
from sqlalchemy import (
    JSON,
    Boolean,
    ColumnElement,
    Table,
    Text,
    bindparam,
    cast,
    exc,
    func,
    insert,
    select,
)
from sqlalchemy.engine import Connection, Dialect

#: Rows a statement: 16 columns of 256 rows stay far below SQLite's 32,766 parameters.
ROWS_A_STATEMENT = 256
#: The statement sizes used, largest first (``_many_values``).
STATEMENT_SIZES = (ROWS_A_STATEMENT, 64, 16, 4, 1)


def insert_rows(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` (dicts of column values, all with the same columns) in ``conn``'s
    transaction: all of them or, on an error, none of the statement that failed."""
    if not rows:
        return
    names = tuple(rows[0])
    columns = rows[0].keys()  # (each row's values are taken by name: their order is free)
    if not all(map(columns.__eq__, map(dict.keys, rows))):  # (in C: no Python step a row)
        raise ValueError("rows to insert together must name the same columns")
    dialect = conn.dialect
    if dialect.name == "sqlite":
        _many_values(conn, table, names, rows)
    elif dialect.name == "postgresql" and dialect.driver == "psycopg":
        if not _json_rows(conn, table, names, rows):
            _copy(conn, table, names, rows)
    else:
        conn.execute(insert(table), rows)


def _values(
    dialect: Dialect, table: Table, names: tuple[str, ...], rows: list[dict[str, Any]]
) -> list[list[Any]]:
    """Each row's values as the driver takes them (the dialect's own type: SQLite keeps
    times as text without an offset)."""
    take, processed = _processors(dialect, table, names)
    values = [list(take(row)) for row in rows]
    for at, process in processed:  # (a few columns: times, flags)
        for row_values in values:
            if row_values[at] is not None:
                row_values[at] = process(row_values[at])
    return values


@lru_cache(maxsize=16)
def _processors(
    dialect: Dialect, table: Table, names: tuple[str, ...]
) -> tuple[Callable[[dict[str, Any]], tuple[Any, ...]], tuple[tuple[int, Any], ...]]:
    """How to take a row's values in ``names``' order, and the columns whose type processes
    a value before the driver takes it (with the processing)."""
    found = [table.c[n].type.dialect_impl(dialect).bind_processor(dialect) for n in names]
    take = itemgetter(*names)
    one = len(names) == 1
    return (
        (lambda row: (take(row),)) if one else take,
        tuple((at, process) for at, process in enumerate(found) if process is not None),
    )


def _many_values(
    conn: Connection, table: Table, names: tuple[str, ...], rows: list[dict[str, Any]]
) -> None:
    values = _values(conn.dialect, table, names, rows)
    start = 0
    while start < len(values):
        # statements of a few sizes only: SQLite keeps each prepared statement (a 256-row
        # one holds a large program), and a statement for every count from 1 to 256 took
        # some 20 MB a worker
        count = next(size for size in STATEMENT_SIZES if size <= len(values) - start)
        flat = tuple(value for row in values[start : start + count] for value in row)
        conn.exec_driver_sql(_statement(conn.dialect, table, names, count), flat)
        start += count


_FLAGS = frozenset((True, False, None))


def _json_rows(
    conn: Connection, table: Table, names: tuple[str, ...], rows: list[dict[str, Any]]
) -> bool:
    """Insert the rows as one JSON array (PostgreSQL); False, with nothing done, where a
    value does not go as JSON as it is (a column whose type processes its value, other than
    a flag's check; a value JSON has no type for)."""
    processed = _processors(conn.dialect, table, names)[1]
    if any(not isinstance(table.c[names[at]].type, Boolean) for at, _ in processed):
        return False
    for at, process in processed:  # (a flag's own check: True, False or None, kept as is)
        if not _FLAGS.issuperset(map(itemgetter(names[at]), rows)):
            for row in rows:
                process(row[names[at]])  # (says which value, as SQLAlchemy's insert would)
    try:
        payload = orjson.dumps(rows).decode()
    except orjson.JSONEncodeError:
        return False
    conn.exec_driver_sql(_json_statement(conn.dialect, table, names), (payload,))
    return True


@lru_cache(maxsize=16)
def _json_statement(dialect: Dialect, table: Table, names: tuple[str, ...]) -> str:
    """Each element of the JSON array a row of ``table``'s own type (its columns' types: the
    server reads an instant's offset, a boolean, a null), inserted in the array's order."""
    preparer = dialect.identifier_preparer
    columns = ", ".join(preparer.quote(n) for n in names)
    return (
        f"INSERT INTO {preparer.format_table(table)} ({columns}) SELECT {columns} "
        f"FROM json_populate_recordset(NULL::{preparer.format_table(table)}, %s) "
        "WITH ORDINALITY AS given ORDER BY given.ordinality"
    )


def _copy(
    conn: Connection, table: Table, names: tuple[str, ...], rows: list[dict[str, Any]]
) -> None:
    dialect = conn.dialect
    quote = dialect.identifier_preparer.quote
    sql = f"COPY {quote(table.name)} ({', '.join(quote(n) for n in names)}) FROM STDIN"
    raw = conn.connection.driver_connection
    assert raw is not None
    try:
        with raw.cursor() as cursor, cursor.copy(sql) as copy:
            for values in _values(dialect, table, names, rows):
                copy.write_row(values)
    except dialect.loaded_dbapi.Error as error:  # as SQLAlchemy's own statements raise it
        raise exc.DBAPIError.instance(
            sql, None, error, dialect.loaded_dbapi.Error, dialect=dialect
        ) from error


@lru_cache(maxsize=16)
def _statement(dialect: Dialect, table: Table, names: tuple[str, ...], count: int) -> str:
    quote = dialect.identifier_preparer.quote
    one = "(" + ", ".join("?" for _ in names) + ")"
    return (
        f"INSERT INTO {quote(table.name)} ({', '.join(quote(n) for n in names)}) "
        f"VALUES {', '.join([one] * count)}"
    )


def one_of(column: ColumnElement[Any], dialect: str) -> ColumnElement[bool]:
    """``column IN`` the values given as the parameter ``one_of`` (``one_of_values``): one
    JSON array the database reads into rows (``json_array_elements_text`` on PostgreSQL,
    ``json_each`` on SQLite). The statement is the same whatever the number of values, so it
    is built and compiled once; an ``IN`` list is rendered, and parsed by the driver, again
    for every length (the card writer's feedback check, with a batch's 200 card uuids, spent
    1.5 ms of CPU on it a batch, more than the insert itself; psycopg's own dumping of a text
    array, 0.15 ms). Either database still finds the values through ``column``'s index."""
    if dialect == "postgresql":
        rows = func.json_array_elements_text(cast(bindparam("one_of", type_=Text), JSON))
    elif dialect == "sqlite":
        rows = func.json_each(bindparam("one_of", type_=Text))
    else:  # (the service runs on these two only: the settings refuse any other at start)
        raise ValueError(f"no one_of for the {dialect} database")
    return column.in_(select(rows.table_valued("value").c.value))


def one_of_values(values: Collection[str]) -> str:
    """The parameter ``one_of`` for ``values`` (any text: JSON escapes it)."""
    return json.dumps(list(values))
