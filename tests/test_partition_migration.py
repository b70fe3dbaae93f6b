"""Contract section 10: the migration to monthly partitions (reports 0013-0014, renders 0008) on a PostgreSQL
database holding data. A scratch database is migrated to the plain tables, filled, then migrated on: every row
is kept, in the partition of its month, every stored message event's key is in the key table, and the platform
goes on from there (a resent event is still a duplicate, a new one is stored)."""

import json
import uuid

import psycopg
import pytest
from django.db import connection

from reliability.servers import base_env, database_url_of, manage

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="partitions are PostgreSQL's")

PROJECT, CHANNEL, MESSAGE = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
RENDER = uuid.uuid4()
EVENTS = [("evt-sep", "sent", "2026-09-20 10:00:00+00"), ("evt-dec", "opened", "2026-12-02 11:00:00+00"),
          ("evt-far", "clicked", "2031-01-01 00:00:00+00")]


@pytest.fixture
def scratch():
    name = f"partition_migration_{uuid.uuid4().hex[:8]}"
    admin = {**connection.settings_dict, "NAME": "postgres"}
    url = database_url_of({**connection.settings_dict, "NAME": name})
    with psycopg.connect(database_url_of(admin), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url, base_env(DATABASE_URL=url)
    finally:
        with psycopg.connect(database_url_of(admin), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def fill_plain_tables(url: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO apikeys_project (id, name, retention_days, rate_limit_per_minute, created_at) "
                     "VALUES (%s, 'migrated', 120, 600, now())", [PROJECT])
        conn.execute("INSERT INTO reports_channel (id, project_id, external_id, name, is_default, created_at) "
                     "VALUES (%s, %s, %s, 'Newsletter', false, now())", [CHANNEL, PROJECT, uuid.uuid4()])
        conn.execute("INSERT INTO reports_message (id, project_id, channel_id, client_message_id, from_address, "
                     "from_domain, recipient, created_at) VALUES (%s, %s, %s, 'msg-1', 'news@acme.example', "
                     "'acme.example', 'reader@example.org', now())", [MESSAGE, PROJECT, CHANNEL])
        for client_id, kind, at in EVENTS:
            conn.execute("INSERT INTO reports_messageevent (id, project_id, message_id, client_event_id, type, "
                         "occurred_at, received_at) VALUES (%s, %s, %s, %s, %s, %s, now())",
                         [uuid.uuid4(), PROJECT, MESSAGE, client_id, kind, at])
        conn.execute("INSERT INTO reports_dailyrollup (project_id, day, grain, channel_key, domain, sent, delivered, "
                     "opens, clicks, unique_opens, unique_clicks) VALUES (%s, '2026-09-20', 'all', '', '', 1, 0, 0, 0, "
                     "0, 0)", [PROJECT])
        conn.execute("INSERT INTO renders_render (id, project_id, name, file, size_bytes, status, page_sizes, "
                     "created_at) VALUES (%s, %s, 'Quote.pdf', 'renders/q.pdf', 10, 'ready', '[]', now())",
                     [RENDER, PROJECT])
        for n, at in enumerate(("2026-09-21 08:00:00+00", "2026-12-01 08:00:00+00")):
            conn.execute("INSERT INTO renders_engagementevent (id, project_id, render_id, event_type, actor_kind, "
                         "created_at) VALUES (%s, %s, %s, 'viewed', 'partner', %s)",
                         [uuid.UUID(int=n + 1), PROJECT, RENDER, at])


def rows(url: str, sql: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


def test_the_migration_keeps_every_row_in_the_partition_of_its_month_and_the_platform_goes_on(scratch):
    url, env = scratch
    manage("migrate", "reports", "0012", "-v0", env=env)
    manage("migrate", "renders", "0007", "-v0", env=env)
    fill_plain_tables(url)

    manage("migrate", "-v0", env=env)

    assert rows(url, "SELECT client_event_id, tableoid::regclass::text FROM reports_messageevent ORDER BY 1") == [
        ("evt-dec", "reports_messageevent_p2026_12"), ("evt-far", "reports_messageevent_pdefault"),
        ("evt-sep", "reports_messageevent_p2026_09")]  # 120 days' retention: September has its month
    assert rows(url, "SELECT client_event_id FROM reports_messageeventkey ORDER BY 1") == [
        ("evt-dec",), ("evt-far",), ("evt-sep",)]
    assert rows(url, "SELECT id, tableoid::regclass::text FROM renders_engagementevent ORDER BY 1") == [
        (uuid.UUID(int=1), "renders_engagementevent_p2026_09"), (uuid.UUID(int=2), "renders_engagementevent_p2026_12")]
    assert rows(url, "SELECT sent, tableoid::regclass::text FROM reports_dailyrollup") == [
        (1, "reports_dailyrollup_p2026_09")]
    assert rows(url, "SELECT count(*) FROM pg_partitioned_table") == [(6,)]

    # Ingestion goes on: a resent event is a duplicate, a new one is stored; rollups rebuild from the events.
    script = (
        "import json; from apikeys.models import Project; from reports.services import ingest_message_events; "
        "from reports.validation import parse_message_event; "
        f"p = Project.objects.get(pk='{PROJECT}'); "
        "wire = lambda i, t: parse_message_event({'id': i, 'type': t, 'messageId': 'msg-1', "
        f"'channel': '{uuid.uuid4()}', 'from': 'news@acme.example', 'recipient': 'reader@example.org', "
        "'occurredAt': '2026-12-02T11:00:00Z'})[0]; "
        "r = ingest_message_events(project=p, events=[wire('evt-dec', 'opened'), wire('evt-new', 'clicked')]); "
        "print(json.dumps([r.accepted, r.duplicates]))"
    )
    result = manage("shell", "-c", script, env=env)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [1, 1]
    assert rows(url, "SELECT count(*) FROM reports_messageevent") == [(4,)]
    rebuilt = manage("rebuild_rollups", "--project", str(PROJECT), env=env)
    assert "rollup rows changed" in rebuilt.stdout
