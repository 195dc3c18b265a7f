"""The database engine and a readiness check."""

from __future__ import annotations

from typing import Any

import orjson
from psycopg.types.json import set_json_loads
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import SQLAlchemyError

from shared.adapters import pgarrays
from shared.settings import normalize_database_url


def make_engine(
    database_url: str,
    *,
    pool_size: int = 5,
    max_overflow: int | None = None,
    pool_timeout_s: float = 30.0,
    statement_timeout_ms: int | None = None,
    application_name: str | None = None,
) -> Engine:
    """An engine for `database_url` (any accepted form) with pre-ping, so a restarted server heals the pool.

    `max_overflow` defaults to `pool_size`; `statement_timeout_ms` (0 = none) is set on every connection, so
    PostgreSQL itself cancels a statement that runs longer.
    """
    if not database_url:
        raise ValueError("DATABASE_URL is not set")
    # JSONB columns load with orjson: customer state is read for every customer of every batch
    set_json_loads(orjson.loads)
    connect_args: dict[str, Any] = {"connect_timeout": 5}
    if application_name is not None:  # shown in pg_stat_activity: which pool a connection belongs to
        connect_args["application_name"] = application_name
    if statement_timeout_ms is not None:
        connect_args["options"] = f"-c statement_timeout={int(statement_timeout_ms)}"
    engine = create_engine(
        normalize_database_url(database_url),
        pool_size=pool_size,
        max_overflow=pool_size if max_overflow is None else max_overflow,
        pool_timeout=pool_timeout_s,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args=connect_args,
    )
    event.listen(engine, "connect", _on_connect)
    return engine


def _on_connect(dbapi_connection: Any, _record: Any) -> None:
    pgarrays.register(dbapi_connection.adapters)


def database_reachable(engine: Engine) -> str | None:
    """None when `SELECT 1` succeeds, else the reason it did not."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return None
    except SQLAlchemyError as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
