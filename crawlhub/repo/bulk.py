"""The PostgreSQL COPY fast path for bulk inserts, behind one function."""

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy.orm import Session


def copy_rows(
    session: Session, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> bool:
    """COPY rows into a table inside the session's transaction; False when not on PostgreSQL."""
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        return False
    driver = connection.connection.driver_connection
    assert driver is not None
    statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
    with driver.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)
    return True
