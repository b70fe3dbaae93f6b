"""Section 10: every alias's settings by one rule (engagement_platform/db/config.py), and the router."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from engagement_platform.db.config import DEFAULT_STARTUP_OPTIONS, database_settings, replica_settings
from engagement_platform.db.replica import PRIMARY, reading_from_replica, replica_read
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


def test_writes_and_migrations_go_to_the_primary_only():
    router = PrimaryRouter()
    assert router.db_for_write(None) == "default"
    assert router.db_for_read(None) is None
    assert router.allow_migrate("default", "renders") and not router.allow_migrate("replica", "renders")
