"""The shared NDJSON reader's parsing workers: the same lines, numbers and refusals as one process, and stopped."""

import io
import json
import multiprocessing
import uuid

import pytest
from django.core.management import call_command

from engagement_platform import ndjson
from engagement_platform.ndjson import Input, NdjsonReader
from renders.backfill import BackfillRows, parse_render_event
from renders.models import EngagementEvent

PROJECT = uuid.UUID("01966e2a-0000-7000-8000-0000000000aa")
RENDER = "01966e2a-0000-7000-8000-0000000000bb"


def good(i: int) -> str:
    return json.dumps({"renderId": RENDER, "eventType": ("viewed", "printed")[i % 2], "actorKind": "partner",
                       "shareId": None, "sourceIp": f"10.0.{i // 256 % 256}.{i % 256}", "userAgent": "Importer/1.0",
                       "metadata": {"n": i, "x": 0.5} if i % 7 == 0 else {"n": i},
                       "createdAt": f"2026-03-01T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z"})


def mixed_lines(count: int) -> bytes:
    """Good lines, with bad, blank, non-JSON and repeated lines among them (across chunk boundaries)."""
    lines = []
    for i in range(count):
        if i % 97 == 0:
            lines.append("{not json")
        elif i % 89 == 0:
            lines.append("   ")
        elif i % 83 == 0:
            lines.append(json.dumps({"renderId": "nope", "eventType": "sneezed", "extra": 1}))
        elif i % 79 == 0:
            lines.append("[1, 2]")
        elif i % 31 == 0:
            lines.append(good(i - 1))  # a repeat: the same content, the same derived id
        else:
            lines.append(good(i))
    return ("\n".join(lines) + "\n").encode()


def read_all(data: bytes, workers: int) -> tuple[list, str, str]:
    stderr = io.StringIO()
    source = Input(stream=io.BytesIO(data), total_bytes=len(data))
    with NdjsonReader(source, parse=parse_render_event, prepare=BackfillRows(PROJECT), stderr=stderr, verbosity=1,
                      workers=workers) as reader:
        items = list(reader.items())
    return items, stderr.getvalue(), reader.tally.summary()


def test_parsing_workers_give_exactly_the_lines_numbers_and_refusals_of_one_process():
    data = mixed_lines(3_500)  # several chunks of ndjson.CHUNK_LINES lines per worker

    one = read_all(data, workers=0)
    two = read_all(data, workers=2)

    assert two == one
    items, errors, _summary = one
    assert len(items) > 3_000
    assert len({row[0] for _number, row in items}) < len(items)  # repeated lines derive repeated ids
    assert errors.count("rejected: not valid JSON") == 37
    assert "line 84: rejected: extra: Unknown field.; renderId: Must be a UUID." in errors


def test_a_file_of_a_megabyte_or_more_is_parsed_by_workers_and_standard_input_in_process(tmp_path):
    small = Input(stream=io.BytesIO(b""), total_bytes=ndjson.WORKERS_MIN_BYTES - 1)
    large = Input(stream=io.BytesIO(b""), total_bytes=ndjson.WORKERS_MIN_BYTES)
    piped = Input(stream=io.BytesIO(b""), total_bytes=None)

    workers = [NdjsonReader(source, parse=parse_render_event, stderr=io.StringIO(), verbosity=0).workers
               for source in (small, large, piped)]

    assert workers == [0, ndjson.PARSE_WORKERS, 0]


@pytest.mark.django_db(transaction=True)
def test_a_failing_store_stops_the_parsing_workers(project, render, tmp_path, monkeypatch):
    import renders.backfill

    path = tmp_path / "large.ndjson"
    lines = [good(i).replace(RENDER, str(render.id)) for i in range(6_000)]
    path.write_text("\n".join(lines) + "\n")
    assert path.stat().st_size >= ndjson.WORKERS_MIN_BYTES
    store = renders.backfill.render_events_backfill
    seen_workers, stored = [], []

    def store_then_fail(**kwargs):
        seen_workers.extend(child.pid for child in multiprocessing.active_children())
        if stored:
            raise RuntimeError("the database went away")
        stored.append(store(**kwargs))
        return stored[-1]

    monkeypatch.setattr(renders.backfill, "render_events_backfill", store_then_fail)

    with pytest.raises(RuntimeError, match="the database went away"):
        call_command("backfill_render_events", "--project", project.name, str(path), "--batch-size", "500",
                     stdout=io.StringIO(), stderr=io.StringIO())

    assert seen_workers  # the file was parsed by workers
    assert multiprocessing.active_children() == []
    assert EngagementEvent.objects.filter(render=render).count() == 500
