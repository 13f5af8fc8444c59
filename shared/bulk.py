"""Many rows at once on PostgreSQL: COPY, into the table itself or into a scratch copy of it.

A multi-row INSERT costs the client more than the server: its SQL text (or its array
parameters) is built and then parsed again for every batch.  COPY streams the rows in
one round trip with nothing to build.  Rows that must meet an ON CONFLICT first go into a
temporary table shaped like their target (one per connection, emptied at every commit),
and one ``INSERT … SELECT`` takes them from there.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Connection, Table


def copy_rows(connection: Connection, table_name: str, rows: list[dict[str, Any]]) -> None:
    """COPY ``rows`` (dicts with the same keys) into ``table_name``, in the connection's transaction."""
    columns = list(rows[0])
    names = ", ".join(f'"{name}"' for name in columns)
    cursor = cast(Any, connection.connection.driver_connection).cursor()  # psycopg's own connection
    with cursor.copy(f'COPY "{table_name}" ({names}) FROM STDIN') as copy:
        for row in rows:
            copy.write_row([row[name] for name in columns])


def copy_to_scratch(connection: Connection, table: Table, rows: list[dict[str, Any]]) -> str:
    """COPY ``rows`` into a temporary table shaped like ``table``; its name, to select from."""
    scratch = f"{table.name}_scratch"
    # Every time: a scratch table made in a transaction that rolled back is gone again.
    connection.exec_driver_sql(
        f'CREATE TEMPORARY TABLE IF NOT EXISTS "{scratch}" (LIKE "{table.name}") ON COMMIT DELETE ROWS'
    )
    copy_rows(connection, scratch, rows)
    return scratch
