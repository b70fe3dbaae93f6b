"""The rollup rule is stated once and the report side's SQL lives in one module that goes through Django.

`reports.rollups.definition` states the grains, the figures and what each event adds;
`reports.rollups.sql` derives every counting statement from it and is the only module of the
app that writes SQL or asks which database it runs on. Its statements run on Django's cursors, so
query capture sees each of them, the set-based PostgreSQL batch included.
"""

import ast
from pathlib import Path

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from reports.models import DailyFirstTouch, DailyRollup, MessageEvent, SliceRollup
from reports.rollups import definition as rule
from reports.rollups.sql import CREATED_NOTE
from reports.services import DeferredRollups
from tests.test_reports_deferred_rollups import parsed
from tests.test_reports_helpers import ingest, wire_event

REPORTS = Path(__file__).resolve().parent.parent / "reports"
SQL_MODULE = REPORTS / "rollups" / "sql.py"


def _tables(queries) -> str:
    return "\n".join(query["sql"] for query in queries)


def _sources_besides_the_database_module():
    for path in sorted(REPORTS.rglob("*.py")):
        if path == SQL_MODULE or "migrations" in path.parts:
            continue
        yield path, ast.parse(path.read_text(encoding="utf-8"))


def test_no_module_of_reports_but_its_database_module_asks_which_database_it_runs_on():
    offenders = sorted(
        str(path.relative_to(REPORTS)) for path, tree in _sources_besides_the_database_module()
        if any(isinstance(node, ast.Attribute) and node.attr == "vendor" for node in ast.walk(tree)))
    assert offenders == []


def test_no_module_of_reports_but_its_database_module_executes_sql():
    offenders = sorted(
        str(path.relative_to(REPORTS)) for path, tree in _sources_besides_the_database_module()
        if any(isinstance(node, ast.Attribute) and node.attr in {"execute", "executemany", "raw", "extra"}
               for node in ast.walk(tree)))
    assert offenders == []


def test_the_definition_names_every_grain_and_rollup_column_the_models_store():
    assert {grain.name for grain in rule.GRAINS} == {value for value, _label in
                                                      DailyRollup._meta.get_field("grain").choices}
    stored = {field.name for field in DailyRollup._meta.get_fields()} - {"id", "project", "day"}
    assert stored == set(rule.KEY_COLUMNS) | set(rule.FIGURE_COLUMNS)
    ledger = {field.name for field in DailyFirstTouch._meta.get_fields()} - {"pk", "project", "day"}
    assert ledger == {"type", "recipient", *rule.LAST_COLUMNS, *rule.NEW_COLUMNS, CREATED_NOTE, *rule.KEY_COLUMNS}
    slices = {field.name for field in SliceRollup._meta.get_fields()} - {"id", "project", "day", "slice"}
    assert slices == set(rule.KEY_COLUMNS) | {figure.column for figure in rule.COUNTED}


@pytest.mark.django_db
def test_query_capture_sees_every_statement_of_an_ingestion_batch(project):
    events = [wire_event("delivered", "2026-05-01T10:00:00Z"), wire_event("opened", "2026-05-01T10:05:00Z")]
    with CaptureQueriesContext(connection) as captured:
        result = ingest(project, events)
    assert result.accepted == 2
    statements = _tables(captured.captured_queries)
    for table in (MessageEvent, DailyFirstTouch, DailyRollup, SliceRollup):
        assert f'INTO "{table._meta.db_table}"' in statements, table


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="deferred rollups are PostgreSQL's bulk-load path")
def test_a_deferred_batch_is_one_django_transaction_seen_by_query_capture(project):
    deferred = DeferredRollups(project)
    deferred.start()
    events = parsed([wire_event("sent", "2026-05-01T10:00:00Z"), wire_event("delivered", "2026-05-01T10:00:01Z")])
    with CaptureQueriesContext(connection) as captured:
        assert deferred.store(events).accepted == 2
    assert f'INTO "{MessageEvent._meta.db_table}"' in _tables(captured.captured_queries)
    # The batch runs in a transaction of Django's own (which the capture logs), not one sent behind it.
    sqls = [query["sql"] for query in captured.captured_queries]
    at = next(i for i, sql in enumerate(sqls) if f'INTO "{MessageEvent._meta.db_table}"' in sql)
    assert [sql for sql in sqls[:at] if sql in {"BEGIN", "COMMIT"}][-1] == "BEGIN"
    assert [sql for sql in sqls[at:] if sql in {"BEGIN", "COMMIT"}][0] == "COMMIT"
    assert not connection.in_atomic_block and connection.get_autocommit()
    deferred.finish()
    assert MessageEvent.objects.filter(project=project).count() == 2


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="deferred rollups are PostgreSQL's bulk-load path")
def test_a_deferred_batch_that_fails_leaves_nothing_and_the_connection_usable(project, monkeypatch):
    from reports.rollups import sql

    deferred = DeferredRollups(project)
    deferred.start()
    monkeypatch.setattr(sql, "_events_only_statement", lambda: "SELECT no_such_column FROM reports_messageevent")
    events = parsed([wire_event("sent", "2026-05-01T10:00:00Z")])
    with pytest.raises(Exception):  # noqa: B017 - the database's error, translated by Django
        deferred.store(events)
    assert not connection.in_atomic_block
    monkeypatch.undo()
    with transaction.atomic():
        assert MessageEvent.objects.filter(project=project).count() == 0
    assert deferred.store(events).accepted == 1
    deferred.finish()
