"""The PostgreSQL backend's health check: skipped right after a request that used the connection
without error, run for a connection left idle, and a connection broken while idle or busy is
replaced without a lasting failure."""

import time

import pytest
from django.db import OperationalError, connection, connections

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the backend is PostgreSQL's"),
]


@pytest.fixture
def fresh():
    """A connection wrapper of its own (not the test's transaction), with a short idle window and usable counts."""
    made = []

    def make(idle_seconds):
        wrapper = connections.create_connection("default")
        wrapper.settings_dict = {**wrapper.settings_dict,
                                 "OPTIONS": {**wrapper.settings_dict["OPTIONS"],
                                             "health_check_idle_seconds": idle_seconds},
                                 "CONN_HEALTH_CHECKS": True, "CONN_MAX_AGE": 600}
        wrapper.health_check_idle_seconds = idle_seconds
        wrapper.checks = 0
        is_usable = wrapper.is_usable

        def counting_is_usable():
            wrapper.checks += 1
            return is_usable()

        wrapper.is_usable = counting_is_usable
        made.append(wrapper)
        return wrapper

    yield make
    for wrapper in made:
        wrapper.close()


def serve(wrapper, sql="SELECT pg_backend_pid()"):
    """What Django does around one request that runs `sql`: the checks on start and finish."""
    wrapper.close_if_unusable_or_obsolete()
    try:
        with wrapper.cursor() as cursor:
            cursor.execute(sql)
            return cursor.fetchone()[0]
    finally:
        wrapper.close_if_unusable_or_obsolete()


def kill(pid):
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    time.sleep(0.05)


def test_a_connection_that_just_served_a_request_is_not_checked_again(fresh):
    wrapper = fresh(idle_seconds=30)
    pid = serve(wrapper)
    for _ in range(5):
        assert serve(wrapper) == pid
    assert wrapper.checks == 0


def test_an_idle_connection_is_checked_before_it_is_used(fresh):
    wrapper = fresh(idle_seconds=0.05)
    pid = serve(wrapper)
    time.sleep(0.1)
    assert serve(wrapper) == pid
    assert wrapper.checks == 1


def test_zero_checks_before_every_request_like_django(fresh):
    wrapper = fresh(idle_seconds=0)
    serve(wrapper)
    serve(wrapper)
    serve(wrapper)
    assert wrapper.checks == 2  # every request after the one that connected


def test_a_request_that_did_not_use_the_database_does_not_vouch_for_the_connection(fresh):
    wrapper = fresh(idle_seconds=0.2)
    serve(wrapper)
    time.sleep(0.25)
    wrapper.close_if_unusable_or_obsolete()  # a request without a query starts...
    wrapper.close_if_unusable_or_obsolete()  # ...and finishes
    serve(wrapper)
    assert wrapper.checks == 1


def test_a_connection_killed_while_idle_is_replaced_without_a_failed_request(fresh):
    wrapper = fresh(idle_seconds=0.05)
    pid = serve(wrapper)
    kill(pid)
    time.sleep(0.1)
    new_pid = serve(wrapper)
    assert new_pid != pid
    assert wrapper.checks == 1


def test_a_connection_killed_within_the_window_fails_one_request_then_is_replaced(fresh):
    wrapper = fresh(idle_seconds=30)
    pid = serve(wrapper)
    kill(pid)
    with pytest.raises(OperationalError):
        serve(wrapper)
    assert wrapper.connection is None  # closed as that request finished, because an error occurred
    assert serve(wrapper) != pid
