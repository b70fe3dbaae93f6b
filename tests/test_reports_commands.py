"""Section 5: backfill_message_events and rebuild_rollups."""

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection

from apikeys.services import project_soft_delete
from reports.models import DailyRollup, MessageEvent
from tests.test_reports_helpers import (
    bucket,
    delivered_message,
    get_report,
    ingest,
    rollup_snapshot,
    utc,
    wire_event,
)

# Real commits: the backfill stores batches on connections of its own.
pytestmark = pytest.mark.django_db(transaction=True)

MANAGE_PY = Path(settings.BASE_DIR) / "manage.py"


def ndjson(*lines) -> str:
    return "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)


def backfill(*args, **options) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("backfill_message_events", *args, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def mixed_file(tmp_path):
    """Five lines: three good events, a line that is not JSON, a blank line, an invalid event."""
    path = tmp_path / "events.ndjson"
    path.write_text(ndjson(
        wire_event("sent", "2026-05-01T08:00:00Z", recipient="a@example.org", event_id="b-1"),
        '{"id": "b-2", "type": ',
        wire_event("delivered", "2026-05-01T08:00:01Z", recipient="a@example.org", event_id="b-3"),
        "",
        wire_event("opened", "2026-05-01T09:00:00Z", recipient="not-an-address", event_id="b-5"),
        wire_event("opened", "2026-05-01T09:00:00Z", recipient="A@example.org", event_id="b-6"),
    ))
    return path


def test_backfill_keeps_good_lines_reports_bad_ones_with_their_numbers(project, api, mixed_file, clock):
    out, err = backfill(str(mixed_file), project=project.name)

    assert out == "accepted 3, duplicates 0, rejected 2 (lines 2, 5).\n"
    assert err.splitlines()[0].startswith("line 2: rejected: not valid JSON")
    assert err.splitlines()[1] == "line 5: rejected: recipient: Must be an email address."
    assert get_report(api, from_="2026-05-01T00:00:00Z", to="2026-05-02T00:00:00Z").json()["data"] == [
        bucket("2026-05-01T00:00:00Z", sent=1, delivered=1, opens=1, unique_opens=1)]


def test_backfill_refuses_lines_that_are_not_strict_json_and_keeps_the_rest(project, tmp_path):
    good = json.dumps(wire_event("sent", "2026-05-01T08:00:00Z", event_id="ok-1")).encode()
    path = tmp_path / "strict.ndjson"
    path.write_bytes(b"\n".join([
        good,
        b'{"id": "nan-1", "type": "sent", "x": NaN}',
        b"\xef\xbb\xbf" + good.replace(b"ok-1", b"bom-1"),  # a byte-order mark
        good.replace(b"ok-1", b"bad-\xff-utf8"),
        good.replace(b"ok-1", b"lone-\\ud800"),  # an unpaired surrogate escape
        b"[" * 2000 + b"]" * 2000,
    ]) + b"\n")

    out, err = backfill(str(path), project=project.name)

    assert out == "accepted 1, duplicates 0, rejected 5 (lines 2, 3, 4, 5, 6).\n"
    assert [line.split(": rejected: ")[1][:14] for line in err.splitlines()] == ["not valid JSON"] * 5
    assert list(MessageEvent.objects.filter(project=project).values_list("client_event_id", flat=True)) == ["ok-1"]


def test_a_second_backfill_of_the_same_file_is_all_duplicates_and_changes_nothing(project, mixed_file):
    backfill(str(mixed_file), project=str(project.id))
    before = rollup_snapshot(project)

    out, _err = backfill(str(mixed_file), project=str(project.id))

    assert out == "accepted 0, duplicates 3, rejected 2 (lines 2, 5).\n"
    assert rollup_snapshot(project) == before
    assert MessageEvent.objects.filter(project=project).count() == 3


def test_backfill_reads_standard_input(project, monkeypatch):
    data = ndjson(*delivered_message("2026-05-01T08:00:00Z"), "[1, 2]")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data.encode())))

    out, err = backfill("-", project=project.name)

    assert out == "accepted 2, duplicates 0, rejected 1 (lines 3).\n"
    assert err == "line 3: rejected: Must be a JSON object.\n"


class FailingStream:
    """Standard input whose reading fails after some lines, as a broken pipe or a bad disk would."""

    def __init__(self, lines: list[bytes], error: Exception):
        self.lines, self.error = lines, error

    def __iter__(self):
        yield from self.lines
        raise self.error


def test_a_read_error_stops_the_backfill_with_that_error_after_storing_the_batches_read(project):
    lines = [(json.dumps(wire_event("opened", "2026-05-01T09:00:00Z", recipient=f"r{i}@example.org")) + "\n").encode()
             for i in range(5)]

    with pytest.raises(OSError, match="device went away"):
        backfill("-", project=project.name, batch_size=2, stdin=FailingStream(lines, OSError("device went away")))

    # Whole batches read before the failure are stored; the partial one is not, and a rerun adds it.
    assert MessageEvent.objects.filter(project=project).count() == 4


def test_backfill_commits_in_batches_of_the_given_size(project, tmp_path):
    path = tmp_path / "events.ndjson"
    events = [wire_event("opened", "2026-05-01T09:00:00Z", recipient=f"r{i}@example.org") for i in range(7)]
    path.write_text(ndjson(*events, events[0]))  # the last line repeats the first, in a later batch

    out, _err = backfill(str(path), project=project.name, batch_size=3)

    assert out == "accepted 7, duplicates 1, rejected 0.\n"
    assert DailyRollup.objects.get(project=project, grain="all").unique_opens == 7


def test_backfill_summary_names_the_first_rejected_lines_and_counts_the_rest(project, tmp_path):
    path = tmp_path / "bad.ndjson"
    path.write_text(ndjson(*(["nope"] * 60)))

    out, err = backfill(str(path), project=project.name)

    assert out == ("accepted 0, duplicates 0, rejected 60 (lines "
                   + ", ".join(str(n) for n in range(1, 51)) + " and 10 more).\n")
    assert len(err.splitlines()) == 60


def test_backfill_at_verbosity_zero_prints_nothing(project, mixed_file):
    out, err = backfill(str(mixed_file), project=project.name, verbosity=0)

    assert (out, err) == ("", "")
    assert MessageEvent.objects.count() == 3


def test_backfill_shows_a_progress_bar_only_on_a_terminal(project, mixed_file, capsys, monkeypatch):
    backfill(str(mixed_file), project=project.name)
    assert "backfill:" not in capsys.readouterr().err

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    backfill(str(mixed_file), project=project.name)
    assert "backfill:" in capsys.readouterr().err


@pytest.mark.parametrize(("args", "options", "message"), [
    (["missing.ndjson"], {"project": "nobody"}, "No project with id or name 'nobody'."),
    (["/nonexistent/events.ndjson"], {"project": "acme"}, "Cannot read /nonexistent/events.ndjson: "
                                                           "No such file or directory."),
    (["-"], {"project": "acme", "batch_size": 0}, "--batch-size must be from 1 to 10000."),
])
def test_backfill_refuses_bad_arguments(project, args, options, message):
    with pytest.raises(CommandError) as raised:
        backfill(*args, **options)

    assert str(raised.value) == message


def test_backfill_refuses_a_deleted_project(project, mixed_file):
    project_soft_delete(project=project)

    with pytest.raises(CommandError, match="is deleted"):
        backfill(str(mixed_file), project=project.name)


# rebuild_rollups -------------------------------------------------------------------------------


def rebuild(**options) -> str:
    out = io.StringIO()
    call_command("rebuild_rollups", stdout=out, **options)
    return out.getvalue()


@pytest.fixture
def three_days(project):
    ingest(project, [
        *delivered_message("2026-04-10T08:00:00Z", recipient="a@example.org"),
        wire_event("opened", "2026-04-11T09:00:00Z", recipient="a@example.org"),
        wire_event("clicked", "2026-04-12T09:00:00Z", recipient="b@example.org"),
    ])
    return rollup_snapshot(project)


def test_rebuild_repairs_changed_missing_and_stray_rollup_rows(project, three_days):
    DailyRollup.objects.filter(project=project, day="2026-04-10", grain="all").update(sent=99)
    DailyRollup.objects.filter(project=project, day="2026-04-11", grain="domain").delete()
    DailyRollup.objects.create(project=project, day="2026-04-20", grain="all", opens=5)

    out = rebuild(project="acme")

    assert out == "rebuilt 4 days, 3 rollup rows changed.\n"
    assert rollup_snapshot(project) == three_days
    assert rebuild(project="acme") == "rebuilt 3 days, 0 rollup rows changed.\n"


def test_rebuild_limits_itself_to_the_given_days(project, three_days):
    DailyRollup.objects.filter(project=project, grain="all").update(opens=42)

    out = rebuild(project=str(project.id), first_day="2026-04-11", end_day="2026-04-12")

    assert out == "rebuilt 1 days, 1 rollup rows changed.\n"
    repaired = dict(DailyRollup.objects.filter(project=project, grain="all").values_list("day", "opens"))
    assert {str(day): opens for day, opens in repaired.items()} == {
        "2026-04-10": 42, "2026-04-11": 1, "2026-04-12": 42}


def test_rebuild_without_a_project_rebuilds_every_project(project, make_project, three_days):
    other = make_project("other")
    ingest(other, [wire_event("opened", "2026-04-11T09:00:00Z")])
    DailyRollup.objects.update(opens=0)

    out = rebuild()

    assert out == "rebuilt 4 days, 8 rollup rows changed.\n"  # the four grains of 04-11, in each project
    assert rollup_snapshot(project) == three_days
    assert DailyRollup.objects.get(project=other, grain="all").opens == 1


@pytest.mark.parametrize(("options", "message"), [
    ({"project": "nobody"}, "No project with id or name 'nobody'."),
    ({"first_day": "2026-04-12", "end_day": "2026-04-12"}, "--from must be earlier than --to."),
])
def test_rebuild_refuses_bad_arguments(project, options, message):
    with pytest.raises(CommandError, match=message):
        rebuild(**options)


def test_rebuild_refuses_a_malformed_day(project):
    with pytest.raises(CommandError, match="Not a date"):
        call_command("rebuild_rollups", "--from", "April", stdout=io.StringIO())


# Bounded memory: the command runs as its own process against the test database -----------------


def database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}"


def write_generated_events(path: Path, count: int) -> None:
    """`count` events over 28 days: 4 per message, 20,000 distinct recipients, 3 channels, 2 domains."""
    types = ("sent", "delivered", "opened", "clicked")
    with path.open("w") as handle:
        for i in range(count):
            message = i // 4
            handle.write(json.dumps({
                "id": f"gen-{i}", "type": types[i % 4], "messageId": f"msg-{message}",
                "channel": f"0193c2c3-0000-7000-8000-0000000000{message % 3:02d}",
                "from": "news@acme.example" if message % 2 else "alerts@other.example",
                "recipient": f"reader{message % 20000}@example.org",
                "occurredAt": f"2026-04-{1 + (message // 5000) % 28:02d}T{message % 24:02d}:{i % 60:02d}:00Z",
                "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)",
            }) + "\n")


def run_backfill_process(project, path: Path) -> tuple[str, float, float]:
    """(stdout, seconds, peak RSS in MiB) of `manage.py backfill_message_events` as a child process."""
    env = {**os.environ, "DATABASE_URL": database_url()}
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, str(MANAGE_PY), "backfill_message_events", "--project", str(project.id), str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True,
    )
    stdout = child.stdout.read()
    _pid, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    assert child.returncode == 0, stdout
    return stdout, time.perf_counter() - started, usage.ru_maxrss / 1024


@pytest.mark.django_db(transaction=True)
def test_backfill_memory_does_not_grow_with_the_file(project, make_project, tmp_path):
    small, large = tmp_path / "small.ndjson", tmp_path / "large.ndjson"
    write_generated_events(small, 2_000)
    write_generated_events(large, 30_000)
    project_b = make_project("second")

    _out, _seconds, small_peak = run_backfill_process(project, small)
    out, seconds, large_peak = run_backfill_process(project_b, large)

    print(f"backfill of 30,000 lines: {seconds:.1f} s, peak RSS {large_peak:.0f} MiB "
          f"(2,000 lines: {small_peak:.0f} MiB)")
    assert out.strip().splitlines()[-1] == "accepted 30000, duplicates 0, rejected 0."
    assert large_peak - small_peak < 20  # MiB; holding the file's events would take well over 50


@pytest.mark.skipif(not os.environ.get("RUN_SLOW"), reason="a million-line backfill takes minutes; set RUN_SLOW=1")
@pytest.mark.django_db(transaction=True)
def test_a_million_line_backfill_runs_in_bounded_memory_and_a_rerun_changes_nothing(project, tmp_path):
    path = tmp_path / "million.ndjson"
    write_generated_events(path, 1_000_000)

    out, seconds, peak = run_backfill_process(project, path)
    print(f"backfill of 1,000,000 lines ({path.stat().st_size / 2**20:.0f} MiB): {seconds:.0f} s, "
          f"{1_000_000 / seconds:.0f} lines/s, peak RSS {peak:.0f} MiB")
    before = rollup_snapshot(project)
    rerun, rerun_seconds, rerun_peak = run_backfill_process(project, path)
    print(f"rerun: {rerun_seconds:.0f} s, peak RSS {rerun_peak:.0f} MiB")

    assert out.strip().splitlines()[-1] == "accepted 1000000, duplicates 0, rejected 0."
    assert rerun.strip().splitlines()[-1] == "accepted 0, duplicates 1000000, rejected 0."
    assert rollup_snapshot(project) == before
    assert max(peak, rerun_peak) < 200  # MiB, for a file of about 300 MiB
    # Messages 0-4999 and 140000-144999 were sent on 2026-04-01.
    assert DailyRollup.objects.get(project=project, grain="all", day=utc(2026, 4, 1).date()).sent == 10_000
