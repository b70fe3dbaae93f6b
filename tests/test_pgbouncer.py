"""Section 10, connection pooler: the API through PgBouncer in transaction mode.

The module starts its own PgBouncer (Debian's `pgbouncer`, pool_mode = transaction) in front of the
test database and points the `default` alias at it with the settings a deployment behind it uses
(`DATABASE_PREPARE_THRESHOLD=0`, no startup options: `jit = off` set on the database instead), built by
the same rule as the real settings (`database_settings`). It then runs a representative subset of every
route's tests, concurrency included, each exactly as its own module defines it, and checks that the
traffic went through the pooler and that no session state (advisory lock, temporary table, setting)
outlived a transaction.
"""

import functools
import importlib

import psycopg
import pytest
from django.db import connection, connections

from engagement_platform.db.config import database_settings
from reliability.servers import PgBouncer, free_port_in, pgbouncer_installed

pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PgBouncer pools PostgreSQL connections"),
    pytest.mark.skipif(not pgbouncer_installed(), reason="Debian's pgbouncer is not installed"),
]

POOLER_PORTS = (55450, 55499)
ROUTED_KEYS = ("HOST", "PORT", "OPTIONS", "DISABLE_SERVER_SIDE_CURSORS")

# Each route's tests that run through the pooler: module -> test names (parametrized ones run every case).
SUBSET = {
    "tests.test_renders_api": [
        "test_uploading_a_pdf_answers_201_with_the_render_in_camel_case",
        "test_the_download_url_is_absolute_and_serves_the_uploaded_bytes",
        "test_a_file_over_render_max_bytes_is_payload_too_large",
    ],
    "tests.test_engagement": [
        "test_counts_hold_every_event_type_and_total_is_their_sum",
        "test_recent_holds_the_25_newest_events_newest_first",
        "test_the_summary_costs_the_same_queries_whatever_the_number_of_events",
        "test_an_unknown_or_foreign_render_is_not_found_before_a_bad_body",
    ],
    "tests.test_render_event_log": [
        "test_every_event_newest_first_ties_by_id_with_its_traffic_class",
        "test_pages_follow_the_cursor_without_gaps_or_repeats",
        "test_another_projects_key_gets_404_exactly_like_a_missing_id",
    ],
    "tests.test_shares": [
        "test_minting_a_share_answers_the_share_with_an_absolute_unguessable_link",
        "test_revoking_sets_revoked_at_and_records_share_revoked",
    ],
    "tests.test_share_list": [
        "test_the_share_cursor_walks_more_shares_than_the_limit_page_by_page_newest_first",
        "test_the_share_list_of_a_foreign_render_is_404_whatever_the_query",
    ],
    "tests.test_public_pages": [
        "test_opening_the_page_records_viewed_by_the_recipient_with_the_share",
        "test_the_file_is_the_pdf_inline_and_records_nothing",
        "test_download_is_an_attachment_and_records_downloaded",
        "test_recipient_events_are_deduped_per_ip_for_five_minutes",
    ],
    "tests.test_email_flow": [
        "test_an_emailed_render_shows_in_the_engagement_summary_and_in_the_report",
        "test_opens_count_every_fetch_and_unique_opens_each_recipient_once_a_day",
    ],
    "tests.test_render_deletion": [
        "test_deleting_a_render_takes_its_file_shares_emails_and_events_and_keeps_its_messages",
        "test_delete_answers_204_takes_the_render_and_keeps_its_report_messages",
    ],
    "tests.test_reports_ingestion": [
        "test_accepted_events_are_counted_and_reported",
        "test_posting_the_same_batch_again_reports_duplicates_and_changes_no_figure",
        "test_one_invalid_event_rejects_the_whole_batch",
    ],
    "tests.test_reports_engagement": [
        "test_buckets_from_fixed_data_are_exact",
        "test_the_same_holds_on_a_partial_day_counted_from_raw_events",
    ],
    "tests.test_reports_cost": [
        "test_a_year_long_report_runs_a_bounded_number_of_queries",
    ],
    "tests.test_report_cache": [
        "test_events_posted_over_http_show_in_the_next_report",
    ],
    "tests.test_summary_cache": [
        "test_an_event_posted_over_http_shows_in_the_next_summary",
    ],
    "tests.test_concurrency": [
        "test_fifty_concurrent_identical_posts_record_exactly_one_event",
        "test_counts_stay_exact_under_200_concurrent_mixed_events",
    ],
    "tests.test_reports_concurrency": [
        "test_twenty_threads_posting_different_batches_for_one_day_give_exact_sums_and_distinct_counts",
        "test_rebuilds_running_alongside_ingestion_leave_exact_rollups",
        "test_overlapping_batches_in_opposite_orders_never_deadlock",
    ],
    "tests.test_reports_deferred_rollups": [
        "test_one_or_several_connections_store_the_same",
        "test_a_run_that_died_before_its_recount_is_recounted_by_the_next_backfill",
        "test_a_live_runs_marks_are_left_to_it",
    ],
    "tests.test_backfill_render_events": [
        "test_events_are_stored_as_given_and_counted",
        "test_concurrent_loads_of_one_file_count_every_event_once",
    ],
    "tests.test_database_settings": [
        "test_postgresql_connections_compile_no_statement_just_in_time",
    ],
}


def _through_the_pooler(test, module_marks):
    """The test as its module defines it (fixtures, parameters, marks), collected here too."""

    @functools.wraps(test)
    def run(*args, **kwargs):
        return test(*args, **kwargs)

    for mark in module_marks:
        run = mark(run)
    return run


def _is_fixture(value) -> bool:
    return hasattr(value, "_fixture_function_marker")


for _module_name, _names in SUBSET.items():
    _module = importlib.import_module(_module_name)
    _marks = getattr(_module, "pytestmark", [])
    _marks = _marks if isinstance(_marks, list) else [_marks]
    for _name in _names:
        globals()[_name] = _through_the_pooler(getattr(_module, _name), _marks)
    # The module's own fixtures come along. Two modules' `locmem_mail` (autouse: mail in memory, no public
    # base URL) agree; the first one kept also names the sender the email tests expect.
    for _name, _value in vars(_module).items():
        if _is_fixture(_value) and _name not in globals():
            globals()[_name] = _value


def _direct(database: str) -> psycopg.Connection:
    """A connection straight to PostgreSQL, past the pooler."""
    return psycopg.connect(host="127.0.0.1", port=int(pgbouncer_fixture_state["server_port"]), user="postgres",
                           dbname=database, autocommit=True)


pgbouncer_fixture_state: dict = {}


@pytest.fixture(scope="module", autouse=True)
def pgbouncer(django_db_setup, django_db_blocker):
    """PgBouncer in front of the test database, the `default` alias routed through it for this module."""
    settings_dict = connections["default"].settings_dict
    server_port = int(settings_dict.get("PORT") or 5432)
    database = settings_dict["NAME"]
    bouncer = PgBouncer(free_port_in(*POOLER_PORTS), server_port=server_port)
    bouncer.start()
    pgbouncer_fixture_state.update(server_port=server_port, database=database, bouncer=bouncer)
    routed = database_settings(bouncer.database_url(database), conn_max_age=settings_dict["CONN_MAX_AGE"],
                               connect_timeout=3, health_check_idle=1.0, prepare_threshold=0, startup_options="")
    original = {key: settings_dict[key] for key in ROUTED_KEYS if key in settings_dict}
    with django_db_blocker.unblock():
        with _direct(database) as direct:  # what `-c jit=off` did, set where PgBouncer lets it be
            direct.execute(f'ALTER DATABASE "{database}" SET jit = off')
        connections.close_all()
        for key in ROUTED_KEYS:
            settings_dict.pop(key, None)
            if key in routed:
                settings_dict[key] = routed[key]
    try:
        yield bouncer
    finally:
        with django_db_blocker.unblock():
            connections.close_all()
            for key in ROUTED_KEYS:
                settings_dict.pop(key, None)
            settings_dict.update(original)
        bouncer.destroy()


@pytest.mark.django_db
def test_the_tests_above_reached_the_database_through_pgbouncer_without_prepared_statements(pgbouncer):
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_prepared_statements")
        assert cursor.fetchone()[0] == 0
    assert connection.connection.info.port == pgbouncer.port  # the socket psycopg holds is the pooler's
    pool = pgbouncer.pools()[pgbouncer_fixture_state["database"]]
    assert pool["pool_mode"] == "transaction"
    assert pool["cl_active"] >= 1 and pool["sv_active"] + pool["sv_idle"] + pool["sv_used"] >= 1


def test_no_session_state_outlives_a_transaction(pgbouncer):
    """After everything above: no advisory lock held, no temporary table left, no setting changed, on any of
    the pooler's server connections."""
    with _direct(pgbouncer_fixture_state["database"]) as direct:
        assert direct.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = "
                              "(SELECT oid FROM pg_database WHERE datname = current_database())").fetchone()[0] == 0
        assert direct.execute("SELECT count(*) FROM pg_class WHERE relpersistence = 't'").fetchone()[0] == 0
    # Every server connection the pooler holds, asked in turn (one client per server connection at once).
    clients = [psycopg.connect(pgbouncer.database_url(pgbouncer_fixture_state["database"]), prepare_threshold=None)
               for _ in range(pgbouncer.pool_size)]
    try:
        for client in clients:  # each holds its own server connection while its transaction is open
            assert client.execute("SHOW plan_cache_mode").fetchone()[0] == "auto"
            assert client.execute("SHOW synchronous_commit").fetchone()[0] == "on"
    finally:
        for client in clients:
            client.close()
