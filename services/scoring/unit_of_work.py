"""The unit of work of every writer (the scoring transaction, the relay, the health scan, the prospect import):
one transaction that commits only when its block completes, and raw statements on its psycopg connection."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine


@contextmanager
def session(engine: Engine) -> Iterator[Connection]:
    """A unit of work: commits only when the block completes, rolls back on any exception."""
    with engine.connect() as conn:
        trans = conn.begin()
        try:
            yield conn
        except BaseException:
            trans.rollback()
            raise
        trans.commit()


def run_sql(conn: Connection, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Execute on the transaction's own psycopg connection with binary parameters.

    Binary arrays skip psycopg's per-element text escaping, which was the largest client-side cost of a batch.
    """
    with conn.connection.driver_connection.cursor(binary=True) as cur:  # type: ignore[union-attr]
        cur.execute(sql, params)
        return cur.fetchall() if cur.description is not None else []
