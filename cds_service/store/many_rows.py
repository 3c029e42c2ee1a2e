"""Many rows into one table in a few statements: how the card log's writer inserts.

On SQLite, ``executemany`` steps the database once per row, and Python's driver lets go of
the interpreter lock around every step. The writer thread then takes the lock back once per
row from the thread answering hook calls: measured under load, about a tenth of a
millisecond of the worker's CPU per card, four times what the insert itself costs. One
``INSERT ... VALUES (...), (...), ...`` of up to ``ROWS_A_STATEMENT`` rows is one step.

Values go through each column type's own bind processing (as SQLAlchemy's ``insert`` does),
so a row reads back the same whichever way it was written. PostgreSQL keeps SQLAlchemy's
``executemany``: psycopg sends the rows in one pipeline, and a statement of many rows was
measured twice as slow there.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.engine import Connection, Dialect

#: Rows a statement: 16 columns of 256 rows stay far below SQLite's 32,766 parameters.
ROWS_A_STATEMENT = 256


def insert_rows(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` (dicts of column values, all with the same columns) in ``conn``'s
    transaction: all of them or, on an error, none of the statement that failed."""
    if not rows:
        return
    names = tuple(rows[0])
    if any(tuple(row) != names for row in rows):
        raise ValueError("rows to insert together must name the same columns")
    dialect = conn.dialect
    if dialect.name != "sqlite":  # (on PostgreSQL, psycopg's own way was measured faster)
        conn.execute(insert(table), rows)
        return
    # (the dialect's own type: SQLite writes times as text without an offset)
    processors = [table.c[n].type.dialect_impl(dialect).bind_processor(dialect) for n in names]
    for start in range(0, len(rows), ROWS_A_STATEMENT):
        chunk = rows[start : start + ROWS_A_STATEMENT]
        values: list[Any] = []
        for row in chunk:
            for name, process in zip(names, processors, strict=True):
                value = row[name]
                values.append(value if process is None or value is None else process(value))
        conn.exec_driver_sql(_statement(conn.dialect, table, names, len(chunk)), tuple(values))


@lru_cache(maxsize=64)
def _statement(dialect: Dialect, table: Table, names: tuple[str, ...], count: int) -> str:
    quote = dialect.identifier_preparer.quote
    one = "(" + ", ".join("?" for _ in names) + ")"
    return (
        f"INSERT INTO {quote(table.name)} ({', '.join(quote(n) for n in names)}) "
        f"VALUES {', '.join([one] * count)}"
    )
