"""Section 10: every alias's settings by one rule (engagement_platform/db/config.py), the router, and how a
replica-safe read or stream behaves on the primary (tests/test_replica.py runs them against a real standby)."""

import logging

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db.utils import OperationalError

from engagement_platform.db.config import DEFAULT_STARTUP_OPTIONS, database_settings, replica_settings
from engagement_platform.db.replica import PRIMARY, _started, reading_from_replica, replica_read, replica_stream
from engagement_platform.db.router import PrimaryRouter

DEFAULTS = {"conn_max_age": 60, "connect_timeout": 3, "health_check_idle": 1.0, "prepare_threshold": 2,
            "startup_options": DEFAULT_STARTUP_OPTIONS}


def test_a_postgresql_alias_binds_on_the_server_and_prepares_statements_by_default():
    alias = database_settings("postgres://app@db:5432/platform", **DEFAULTS)
    assert alias["ENGINE"] == "engagement_platform.db.postgresql"
    assert alias["OPTIONS"] == {"connect_timeout": 3, "health_check_idle_seconds": 1.0, "options": "-c jit=off",
                                "server_side_binding": True, "prepare_threshold": 2}


def test_behind_a_transaction_pooler_nothing_is_prepared_and_no_startup_options_are_sent():
    alias = database_settings("postgres://app@pgbouncer:6432/platform",
                              **{**DEFAULTS, "prepare_threshold": 0, "startup_options": ""})
    assert alias["OPTIONS"] == {"connect_timeout": 3, "health_check_idle_seconds": 1.0}
    assert alias["DISABLE_SERVER_SIDE_CURSORS"] is True


def test_the_replica_alias_follows_the_same_rule_with_its_own_timeout_and_mirrors_the_primary_in_tests():
    primary = database_settings("postgres://app@db:5432/platform", **DEFAULTS)
    replica = replica_settings("postgres://app@replica:5432/platform", primary=primary,
                               **{**DEFAULTS, "connect_timeout": 1})
    assert replica["HOST"] == "replica" and replica["OPTIONS"]["connect_timeout"] == 1
    assert replica["OPTIONS"]["prepare_threshold"] == 2
    assert replica["TEST"] == {"MIRROR": "default"}


@pytest.mark.parametrize("primary_url, replica_url", [
    ("sqlite:///db.sqlite3", "postgres://app@replica:5432/platform"),
    ("postgres://app@db:5432/platform", "sqlite:///replica.sqlite3"),
])
def test_a_replica_needs_postgresql_on_both_sides(primary_url, replica_url):
    primary = database_settings(primary_url, **DEFAULTS)
    with pytest.raises(ImproperlyConfigured):
        replica_settings(replica_url, primary=primary, **DEFAULTS)


def test_without_a_replica_every_read_uses_the_primary(project):
    assert reading_from_replica(project) == PRIMARY
    assert replica_read(project.pk, lambda using: using) == PRIMARY


def failing_after(chunks: list[bytes], seen: list[str]):
    def stream(using):
        seen.append(using)
        yield from chunks
        raise OperationalError("server closed the connection unexpectedly")
    return stream


def test_on_the_primary_a_stream_starts_only_when_it_is_sent(project):
    """Nothing to fall back to: the request's connection stays free until the response is sent."""
    seen = []
    stream = replica_stream(project, failing_after([b"first\n"], seen))
    assert seen == []
    with pytest.raises(OperationalError):
        list(stream)
    assert seen == [PRIMARY]


def test_a_started_stream_failing_before_its_first_chunk_fails_at_once():
    seen = []
    with pytest.raises(OperationalError):
        _started(failing_after([], seen)(PRIMARY), PRIMARY)
    assert seen == [PRIMARY]


def test_a_started_stream_failing_after_its_first_chunk_is_cut_short_with_an_error_logged(caplog):
    seen = []
    stream = _started(failing_after([b"first\n", b"second\n"], seen)(PRIMARY), PRIMARY)
    assert seen == [PRIMARY]  # started at once: the first chunk is read before the response exists
    received = []
    with caplog.at_level(logging.ERROR, logger="engagement_platform.replica"), pytest.raises(OperationalError):
        received.extend(stream)  # raised again: the server aborts the transfer, the body never looks whole
    assert received == [b"first\n", b"second\n"] and seen == [PRIMARY]  # not retried: rows were sent
    assert "stream cut short after its first chunk, default failed: OperationalError" in caplog.text


def test_closing_a_started_stream_closes_the_read_it_holds():
    closed = []

    def chunks(using):
        try:
            yield b"first\n"
            yield b"second\n"
        finally:
            closed.append(using)

    stream = _started(chunks(PRIMARY), PRIMARY)
    stream.close()  # the response closed before it was sent (the client went away)
    assert closed == [PRIMARY]


def test_writes_and_migrations_go_to_the_primary_only():
    router = PrimaryRouter()
    assert router.db_for_write(None) == "default"
    assert router.db_for_read(None) is None
    assert router.allow_migrate("default", "renders") and not router.allow_migrate("replica", "renders")
