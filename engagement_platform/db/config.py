"""One database alias's Django settings from its URL: the primary's (`DATABASE_URL`) and the replica's
(`DATABASE_REPLICA_URL`) are built by the same rule, so a replica connection behaves like a primary one.
"""

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

SQLITE_ENGINE = "django.db.backends.sqlite3"
POSTGRESQL_ENGINE = "django.db.backends.postgresql"
# Django's PostgreSQL backend with the per-request health check skipped for connections just used.
PLATFORM_POSTGRESQL_ENGINE = "engagement_platform.db.postgresql"
# No JIT compilation: the platform's statements are short, and compiling one whose estimated cost passes
# `jit_above_cost` (a report's edge days at a few thousand events a day) takes tens of milliseconds, more
# than the statement itself.
DEFAULT_STARTUP_OPTIONS = "-c jit=off"


def database_settings(url: str, *, conn_max_age: int, connect_timeout: int, health_check_idle: float,
                      prepare_threshold: int, startup_options: str, sqlite_test_name: str | None = None) -> dict:
    """The settings of one alias.

    PostgreSQL: `connect_timeout` bounds a connection attempt; `startup_options` are sent as libpq's
    `options` (empty sends none: PgBouncer refuses the parameter, so behind it the same settings go on the
    database, `ALTER DATABASE ... SET jit = off`); `prepare_threshold` > 0 binds parameters on the server
    and prepares a statement a connection runs that many times (its plan kept), 0 binds on the client and
    never prepares (a pooler in transaction mode cannot carry a prepared statement from one transaction to
    the next).
    """
    alias = dj_database_url.parse(url, conn_max_age=conn_max_age, conn_health_checks=True)
    if alias["ENGINE"] == SQLITE_ENGINE:
        # IMMEDIATE takes the write lock at BEGIN, so check-then-write sequences serialize.
        alias["OPTIONS"] = {"transaction_mode": "IMMEDIATE", "timeout": 30}
        alias["CONN_MAX_AGE"] = 0
        if sqlite_test_name:
            # A file, not memory, so tests with real threads share one database.
            alias["TEST"] = {"NAME": sqlite_test_name}
        return alias
    options = alias.setdefault("OPTIONS", {})
    options.setdefault("connect_timeout", connect_timeout)
    if alias["ENGINE"] == POSTGRESQL_ENGINE:
        alias["ENGINE"] = PLATFORM_POSTGRESQL_ENGINE
        # Seconds after a request served without error during which a reused connection skips Django's
        # health check (`SELECT 1`); 0 checks before every request as Django does.
        options.setdefault("health_check_idle_seconds", health_check_idle)
    if startup_options:
        options.setdefault("options", startup_options)
    if prepare_threshold > 0:
        options.setdefault("server_side_binding", True)
        options.setdefault("prepare_threshold", prepare_threshold)
    else:
        # Behind a pooler in transaction mode: client-side binding, nothing prepared (Django passes psycopg
        # no threshold), and no server-side cursors (Django's `.iterator()` declares WITH HOLD cursors
        # outside transactions, which would stay on a server connection another client gets next).
        alias["DISABLE_SERVER_SIDE_CURSORS"] = True
    return alias


def replica_settings(url: str, *, primary: dict, **kwargs) -> dict:
    """The replica alias: PostgreSQL only, beside a PostgreSQL primary; in tests it mirrors the primary's
    test database (there is no second test database to replicate into)."""
    if primary["ENGINE"] == SQLITE_ENGINE:
        raise ImproperlyConfigured("DATABASE_REPLICA_URL needs a PostgreSQL DATABASE_URL (SQLite has no replica).")
    alias = database_settings(url, **kwargs)
    if alias["ENGINE"] != PLATFORM_POSTGRESQL_ENGINE:
        raise ImproperlyConfigured("DATABASE_REPLICA_URL must be a postgres:// URL.")
    alias["TEST"] = {"MIRROR": "default"}
    return alias
