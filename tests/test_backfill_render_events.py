"""CONTRACT 5: `manage.py backfill_render_events --project ID_OR_NAME FILE`."""

import io
import json
import uuid

import pytest
from django.core.management import CommandError, call_command

from apikeys.services import project_soft_delete
from renders.models import EngagementEvent
from tests.conftest import requires_postgres, run_in_threads
from tests.sharing import engagement, mint

EVENT_A = "01966e2a-0000-7000-8000-00000000000a"
EVENT_B = "01966e2a-0000-7000-8000-00000000000b"


def line(render, **fields) -> dict:
    event = {"renderId": str(render.id), "eventType": "viewed", "actorKind": "partner", "shareId": None,
             "sourceIp": "198.51.100.7", "userAgent": "Importer/1.0", "metadata": None,
             "createdAt": "2026-04-01T09:00:00.000Z"}
    event.update(fields)
    return event


def ndjson(*events) -> str:
    return "".join((event if isinstance(event, str) else json.dumps(event)) + "\n" for event in events)


def backfill(project_ref, text: str, *args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("backfill_render_events", "--project", project_ref, "-", *args,
                 stdin=io.BytesIO(text.encode("utf-8")), stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_events_are_stored_as_given_and_counted(api, project, render, clock):
    share = mint(api, render)
    text = ndjson(
        line(render, id=EVENT_A, shareId=share["id"], actorKind="recipient", metadata={"source": "old-system"}),
        line(render, id=EVENT_B, eventType="downloaded", createdAt="2026-04-01T11:00:00+02:00"),
        line(render, eventType="email_sent", actorKind="system", sourceIp=None, userAgent=None),
    )

    out, err = backfill(project.name, text)

    assert out.strip().splitlines()[-1] == "accepted 3, duplicates 0, rejected 0."
    assert err == ""
    summary = engagement(api, render)
    assert summary["counts"] | {"share_created": 0} == {"viewed": 1, "downloaded": 1, "printed": 0,
                                                         "email_opened": 0, "email_sent": 1, "share_created": 0,
                                                         "share_revoked": 0}
    assert summary["linkOpens"] == 1
    by_id = {event["id"]: event for event in summary["recent"]}
    assert by_id[EVENT_A] == {"id": EVENT_A, "eventType": "viewed", "actorKind": "recipient",
                              "shareId": share["id"], "sourceIp": "198.51.100.7", "userAgent": "Importer/1.0",
                              "metadata": {"source": "old-system"}, "createdAt": "2026-04-01T09:00:00.000Z"}
    assert by_id[EVENT_B]["createdAt"] == "2026-04-01T09:00:00.000Z"


def test_history_is_not_deduped(project, render, api):
    text = ndjson(line(render), line(render, createdAt="2026-04-01T09:01:00Z"))

    out, _ = backfill(str(project.id), text)

    assert out.strip() == "accepted 2, duplicates 0, rejected 0."
    assert engagement(api, render)["counts"]["viewed"] == 2


def test_loading_the_same_file_twice_adds_nothing(api, project, render):
    text = ndjson(line(render, id=EVENT_A), line(render, eventType="printed"), line(render, eventType="downloaded"))
    backfill(project.name, text)

    out, _ = backfill(project.name, text, "--batch-size", "2")

    assert out.strip() == "accepted 0, duplicates 3, rejected 0."
    counts = engagement(api, render)["counts"]
    assert (counts["viewed"], counts["printed"], counts["downloaded"]) == (1, 1, 1)
    assert EngagementEvent.objects.count() == 3


def test_a_repeated_id_in_the_file_is_a_duplicate_within_and_across_batches(api, project, render):
    text = ndjson(line(render, id=EVENT_A), line(render, id=EVENT_A), line(render, id=EVENT_B),
                  line(render, id=EVENT_A, eventType="printed"))

    out, _ = backfill(project.name, text, "--batch-size", "2")

    assert out.strip() == "accepted 2, duplicates 2, rejected 0."
    assert engagement(api, render)["counts"]["viewed"] == 2
    assert engagement(api, render)["counts"]["printed"] == 0


def test_bad_lines_are_reported_with_their_numbers_and_good_lines_kept(api, project, render, clock):
    text = ndjson(
        line(render),  # 1 good
        "{not json",  # 2
        line(render, eventType="opened"),  # 3
        line(render, createdAt="2026-04-01T09:00:00"),  # 4: no offset
        line(render, extra=1),  # 5: unknown field
        "",  # 6: blank, skipped
        line(render, sourceIp="999.1.1.1"),  # 7
        line(render, metadata=["a"]),  # 8
        line(render, actorKind="robot", id="nope"),  # 9
        "[1, 2]",  # 10
        line(render, createdAt="2026-05-03T10:20:01Z"),  # 11: in the future
        line(render, eventType="printed"),  # 12 good
        line(render, renderId=None),  # 13
    )

    out, err = backfill(project.name, text)

    assert out.strip() == "accepted 2, duplicates 0, rejected 10 (lines 2, 3, 4, 5, 7, 8, 9, 10, 11, 13)."
    reported = [row.split(":")[0] for row in err.strip().splitlines()]
    assert reported == [f"line {n}" for n in (2, 3, 4, 5, 7, 8, 9, 10, 11, 13)]
    assert "eventType" in err and "createdAt" in err and "extra: Unknown field." in err
    assert "actorKind" in err and "id: Must be a UUID." in err
    counts = engagement(api, render)["counts"]
    assert (counts["viewed"], counts["printed"]) == (1, 1)


def test_renders_and_shares_of_other_projects_are_rejected(api, project, render, make_project, make_render,
                                                           make_key, make_client):
    other = make_project("globex")
    foreign_render = make_render(other)
    foreign_share = mint(make_client(make_key(other).raw_key), foreign_render)
    sibling_share = mint(api, make_render(project, name="Sibling.pdf"))
    text = ndjson(
        line(foreign_render),  # 1
        line(render, shareId=foreign_share["id"]),  # 2
        line(render, shareId=sibling_share["id"]),  # 3: ours, but not this render's
        line(render, renderId=str(uuid.uuid4())),  # 4
        line(render),  # 5 good
    )

    out, err = backfill(project.name, text, "--batch-size", "3")

    assert out.strip() == "accepted 1, duplicates 0, rejected 4 (lines 1, 2, 3, 4)."
    assert "line 1: rejected: renderId: No render with that id in this project." in err
    assert "line 2: rejected: shareId: No share of that render in this project." in err
    assert engagement(api, render)["counts"]["viewed"] == 1
    assert not EngagementEvent.objects.filter(render=foreign_render, event_type="viewed").exists()


def test_a_file_path_works_and_no_progress_bar_is_drawn_off_a_terminal(project, render, tmp_path):
    path = tmp_path / "events.ndjson"
    path.write_text(ndjson(line(render), line(render, eventType="printed")))
    out, err = io.StringIO(), io.StringIO()

    call_command("backfill_render_events", "--project", project.name, str(path), stdout=out, stderr=err)

    assert out.getvalue().strip() == "accepted 2, duplicates 0, rejected 0."
    assert err.getvalue() == ""


def test_verbosity_zero_prints_nothing(project, render):
    out, err = backfill(project.name, ndjson(line(render), "oops"), "--verbosity", "0")

    assert (out, err) == ("", "")
    assert EngagementEvent.objects.count() == 1


@pytest.mark.parametrize(("args", "message"), [
    (["--project", "nobody", "-"], "No project"),
    (["--project", "acme", "/nonexistent/file.ndjson"], "Cannot read"),
    (["--project", "acme", "--batch-size", "0", "-"], "--batch-size"),
])
def test_bad_arguments_are_command_errors(project, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("backfill_render_events", *args, stdin=io.BytesIO(b""))


def test_a_deleted_project_is_refused(project):
    project_soft_delete(project=project)

    with pytest.raises(CommandError, match="deleted"):
        call_command("backfill_render_events", "--project", project.name, "-", stdin=io.BytesIO(b""))


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_loads_of_one_file_count_every_event_once(make_project, make_render, make_key, make_client):
    project = make_project("acme")
    render = make_render(project)
    text = ndjson(*[line(render, createdAt=f"2026-04-01T09:{minute:02d}:00Z") for minute in range(40)])

    outputs = run_in_threads(3, lambda _index: backfill(project.name, text, "--batch-size", "7")[0])

    accepted = sum(int(out.split()[1].rstrip(",")) for out in outputs)
    assert accepted == 40
    assert engagement(make_client(make_key(project).raw_key), render)["counts"]["viewed"] == 40


# The derived id, the shared reader, bounded memory ----------------------------------------------------------

PROJECT_FOR_IDS = "01966e2a-0000-7000-8000-0000000000ff"
RENDER_FOR_IDS = "01966e2a-0000-7000-8000-000000000001"


@pytest.mark.parametrize(("raw", "expected"), [
    ({"eventType": "viewed", "actorKind": "partner", "shareId": None, "sourceIp": "198.51.100.7",
      "userAgent": "Importer/1.0", "metadata": None, "createdAt": "2026-04-01T09:00:00.000Z"},
     "019d4845-6280-7ca4-b607-2affa6db527a"),
    ({"eventType": "printed", "actorKind": "recipient", "shareId": "01966e2a-0000-7000-8000-000000000002",
      "sourceIp": "2001:DB8::1", "userAgent": 'Ünïcode "q" \\ tab\there',
      "metadata": {"b": [1, 2.5, {"z": True, "a": None}], "a": "é\n\u0001\u007f\u2028", "1e16": 1e16,
                   "small": 1e-7, "big": 12345678901234567},
      "createdAt": "2026-04-01T11:00:00+02:00"},
     "019d4845-6280-704a-89fd-8d6342526842"),
    ({"eventType": "email_sent", "actorKind": "system", "shareId": None, "sourceIp": None, "userAgent": None,
      "metadata": {"n": 3, "k": "v", "é": "x", "Z": "y"}, "createdAt": "2026-04-01T09:00:00.123456Z"},
     "019d4845-62fb-7a54-9db5-23d479a4054d"),
])
def test_an_id_derived_from_content_stays_the_same_across_versions(raw, expected):
    """Files loaded before keep their ids: a rerun of an old file finds its events stored."""
    from renders.backfill import derived_event_id, parse_render_event

    event, errors = parse_render_event({"renderId": RENDER_FOR_IDS, **raw})

    assert errors == {}
    assert str(derived_event_id(project_id=PROJECT_FOR_IDS, event=event)) == expected


def test_both_backfill_commands_read_through_the_one_shared_reader(project, render, monkeypatch):
    from engagement_platform.ndjson import NdjsonReader

    seen = []
    original = NdjsonReader.reject
    monkeypatch.setattr(NdjsonReader, "reject",
                        lambda self, number, reason: (seen.append((self.parse.__name__, number)),
                                                      original(self, number, reason))[1])

    backfill(project.name, ndjson(line(render), "{oops"))
    out, err = io.StringIO(), io.StringIO()
    call_command("backfill_message_events", "--project", project.name, "-", stdin=io.BytesIO(b"[1]\n"),
                 stdout=out, stderr=err)

    assert seen == [("parse_render_event", 2), ("parse_backfilled_message_event", 1)]
    assert out.getvalue() == "accepted 0, duplicates 0, rejected 1 (lines 1).\n"


def test_lines_refused_when_stored_and_when_read_are_summarised_in_line_order(project, render):
    text = ndjson(line(render, renderId=str(uuid.uuid4())), line(render), "nope", line(render, eventType="printed"),
                  line(render, renderId=str(uuid.uuid4())))

    out, err = backfill(project.name, text, "--batch-size", "10")

    assert out.strip() == "accepted 2, duplicates 0, rejected 3 (lines 1, 3, 5)."
    assert sorted(row.split(":")[0] for row in err.strip().splitlines()) == ["line 1", "line 3", "line 5"]


def test_a_read_error_stops_the_backfill_after_the_batches_read_before_it(project, render):
    class FailingStream:
        def __iter__(self):
            for minute in range(5):
                yield (json.dumps(line(render, createdAt=f"2026-04-01T09:{minute:02d}:00Z")) + "\n").encode()
            raise OSError("device went away")

    with pytest.raises(OSError, match="device went away"):
        call_command("backfill_render_events", "--project", project.name, "-", "--batch-size", "2",
                     stdin=FailingStream(), stdout=io.StringIO(), stderr=io.StringIO())

    assert EngagementEvent.objects.filter(render=render).count() == 4


def run_render_backfill_process(project, path) -> tuple[str, float]:
    """(stdout, peak RSS in MiB) of `manage.py backfill_render_events` as a child process."""
    import os
    import subprocess
    import sys

    from tests.test_reports_commands import MANAGE_PY, database_url

    child = subprocess.Popen(
        [sys.executable, str(MANAGE_PY), "backfill_render_events", "--project", str(project.id), str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env={**os.environ, "DATABASE_URL": database_url()},
        text=True)
    stdout = child.stdout.read()
    _pid, status, usage = os.wait4(child.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, stdout
    return stdout, usage.ru_maxrss / 1024


def write_render_lines(path, render, count: int) -> None:
    with path.open("w") as handle:
        for i in range(count):
            handle.write(json.dumps(line(render, sourceIp=f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}",
                                         metadata={"n": i},
                                         createdAt=f"2026-03-{1 + i // 86400 % 28:02d}T{i // 3600 % 24:02d}:"
                                                   f"{i // 60 % 60:02d}:{i % 60:02d}Z")) + "\n")


@pytest.mark.django_db(transaction=True)
def test_render_backfill_memory_does_not_grow_with_the_file(make_project, make_render, tmp_path):
    small, large = tmp_path / "small.ndjson", tmp_path / "large.ndjson"
    first, second = make_project("acme"), make_project("second")
    render_a, render_b = make_render(first), make_render(second)
    write_render_lines(small, render_a, 2_000)
    write_render_lines(large, render_b, 200_000)

    _out, small_peak = run_render_backfill_process(first, small)
    out, large_peak = run_render_backfill_process(second, large)

    assert out.strip().splitlines()[-1] == "accepted 200000, duplicates 0, rejected 0."
    assert large_peak - small_peak < 25  # MiB; holding the file's events would take hundreds
