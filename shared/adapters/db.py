"""The database engine and a readiness check."""

from __future__ import annotations

from typing import Any

import orjson
from psycopg.types.json import set_json_loads
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import SQLAlchemyError

from shared.adapters import pgarrays
from shared.settings import normalize_database_url


def make_engine(database_url: str, *, pool_size: int = 5) -> Engine:
    """An engine for `database_url` (any accepted form) with pre-ping, so a restarted server heals the pool."""
    if not database_url:
        raise ValueError("DATABASE_URL is not set")
    # JSONB columns load with orjson: customer state is read for every customer of every batch
    set_json_loads(orjson.loads)
    engine = create_engine(
        normalize_database_url(database_url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={"connect_timeout": 5},
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
