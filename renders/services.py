"""Writes on renders and their engagement events."""

import json
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from django.conf import settings
from django.db import connection, transaction

from engagement_platform.clientip import client_ip, valid_ip  # noqa: F401 (the one source-IP rule)
from engagement_platform.clock import now
from engagement_platform.errors import PayloadTooLarge, ValidationFailed
from engagement_platform.ids import parse_uuid
from engagement_platform.traffic import HUMAN, EventKind, Traffic, Verdict, classify
from renders.announcements import announce, announcement_writes, wanted_announcements
from renders.kept_links_store import links_changed
from renders.models import (
    CLASSIFIED_EVENT_TYPES,
    DEDUPED_EVENT_TYPES,
    LINK_OPENS_COUNTER,
    MACHINE_COUNTER_PREFIX,
    ActorKind,
    EngagementEvent,
    EventType,
    Render,
    Share,
    machine_counter_key,
)
from renders.pdfpages import page_image_names, pdf_outline
from renders.selectors import render_in_project, summaries
from renders.upserts import add_to_counters, claim_dedupe_mark, record_in_one_statement
from reports.services import ReclassifyTally

DEDUPE_WINDOW = timedelta(minutes=5)
USER_AGENT_MAX_LENGTH = 512
METADATA_MAX_BYTES = 16 * 1024
PDF_MAGIC = b"%PDF-"


@dataclass(frozen=True)
class RecordResult:
    recorded: bool
    event: EngagementEvent | None = None


def render_create(*, project, uploaded_file, name: str | None = None) -> Render:
    """Store an uploaded PDF as a render of `project`, with its page count; a file that is not a readable PDF
    with at least one page (corrupt, password-protected, empty) is a 400."""
    if uploaded_file.size > settings.RENDER_MAX_BYTES:
        raise PayloadTooLarge(settings.RENDER_MAX_BYTES)
    uploaded_file.seek(0)
    if uploaded_file.read(len(PDF_MAGIC)) != PDF_MAGIC:
        raise ValidationFailed(field_errors={"file": ["The file is not a PDF (it must start with %PDF-)."]})
    uploaded_file.seek(0)
    outline = pdf_outline(uploaded_file.read())
    uploaded_file.seek(0)
    render = Render(project=project, name=name or "", size_bytes=uploaded_file.size,
                    page_count=outline.page_count, page_sizes=outline.page_sizes)
    render.file.save(f"{render.id}.pdf", uploaded_file, save=False)
    render.save()
    return render


def render_delete(*, render: Render) -> None:
    """Delete a render (see `renders_delete`)."""
    renders_delete(renders=Render.objects.filter(pk=render.pk))


def renders_delete(*, renders) -> int:
    """Delete these renders with their shares (whose links then answer 404), emails, events, counters, visits
    and per-page figures, and their files and page images once the deletion commits; their kept summaries are
    dropped then, so they answer 404 at once. Report-side messages of their emails stay (they belong to the
    report). Returns how many were deleted."""
    with transaction.atomic():
        found = list(renders.only("pk", "project_id", "file", "page_count"))
        if not found:
            return 0
        Render.objects.filter(pk__in=[render.pk for render in found]).delete()
        summaries.changed(*(render.pk for render in found))
        links_changed()  # their shares' links, kept by the workers, are gone
        storage = Render._meta.get_field("file").storage
        names = [name for render in found for name in ([render.file.name] if render.file.name else [])
                 + page_image_names(render)]
        transaction.on_commit(lambda: _delete_files(storage, names))
    return len(found)


def _delete_files(storage, names: list[str]) -> None:
    for name in names:
        storage.delete(name)  # a file already gone is no error


def metadata_size_bytes(metadata) -> int:
    return len(json.dumps(metadata, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def contains_nul(value) -> bool:
    """Whether a JSON value holds U+0000 in a key or a string, which PostgreSQL cannot store."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def dedupe_key_for(*, render_id, share_id, event_type: str, source_ip: str | None,
                   traffic: str = Traffic.HUMAN) -> str:
    """The dedupe key of section 2.3 plus the traffic class (section 6): a machine's event never makes a
    person's a duplicate. A human key is written as before the class existed, so marks stay valid."""
    key = f"{render_id}|{share_id or '-'}|{event_type}|{source_ip or '-'}"
    return key if traffic == Traffic.HUMAN else f"{key}|{traffic}"


def counter_increments(event_type: str, share_id, traffic: str = Traffic.HUMAN) -> dict[str, int]:
    """What one event adds to its render's counters: its type (and linkOpens for a share's view), and the
    same keys' machine counters when it is machine traffic."""
    increments = {event_type: 1}
    if event_type == EventType.VIEWED and share_id is not None:
        increments[LINK_OPENS_COUNTER] = 1
    if traffic == Traffic.MACHINE:
        increments.update({machine_counter_key(key): 1 for key in list(increments)})
    return increments


def event_verdict(*, event_type: str, actor_kind: str, user_agent: str | None, source_ip: str | None,
                  request_purpose: str | None) -> Verdict:
    """The traffic class of a render event: recipients' views, downloads, prints and email opens are judged
    by the traffic rules; partner and system events are always human."""
    if actor_kind != ActorKind.RECIPIENT or event_type not in CLASSIFIED_EVENT_TYPES:
        return HUMAN
    kind = EventKind.OPEN if event_type == EventType.EMAIL_OPENED else EventKind.VISIT
    return classify(kind=kind, user_agent=user_agent, source_ip=source_ip, purpose=request_purpose)


def new_event(*, project_id, render_id, event_type: str, actor_kind: str, share_id=None,
              source_ip: str | None = None, user_agent: str | None = None, metadata=None, at,
              request_purpose: str | None = None) -> EngagementEvent:
    """An unsaved event with its traffic class decided (what every recording path stores)."""
    user_agent = truncate_user_agent(user_agent)
    verdict = event_verdict(event_type=event_type, actor_kind=actor_kind, user_agent=user_agent,
                            source_ip=source_ip, request_purpose=request_purpose)
    return EngagementEvent(project_id=project_id, render_id=render_id, share_id=share_id, event_type=event_type,
                           actor_kind=actor_kind, source_ip=source_ip, user_agent=user_agent, metadata=metadata,
                           created_at=at, traffic=verdict.traffic, machine_reason=verdict.reason,
                           request_purpose=request_purpose)


def event_dedupe_key(event: EngagementEvent) -> str | None:
    """The event's dedupe key, or None for a type that is never deduped."""
    if event.event_type not in DEDUPED_EVENT_TYPES:
        return None
    return dedupe_key_for(render_id=event.render_id, share_id=event.share_id, event_type=event.event_type,
                          source_ip=event.source_ip, traffic=event.traffic)


def record_event(*, render: Render, event_type: str, actor_kind: str, share: Share | None = None,
                 source_ip: str | None = None, user_agent: str | None = None, metadata=None,
                 at=None, request_purpose: str | None = None) -> RecordResult:
    """Record one engagement event, deduped for viewed/downloaded/printed, counters kept exact.

    Its traffic class is decided here (`event_verdict`); `request_purpose` is what the recording request
    was for (engagement_platform.traffic.request_purpose), None when there was no request.
    The public events it makes (renders.announcements) are told to their listeners in the same transaction.
    A recorded event drops the render's kept summary once it commits; a deduped one changes nothing.
    """
    event = new_event(project_id=render.project_id, render_id=render.pk, event_type=event_type,
                      actor_kind=actor_kind, share_id=share.pk if share is not None else None,
                      source_ip=source_ip, user_agent=user_agent, metadata=metadata, at=at or now(),
                      request_purpose=request_purpose)
    if connection.vendor == "postgresql":
        return _record_event_postgresql(event)
    wanted = wanted_announcements(event)
    with transaction.atomic():
        dedupe_key = event_dedupe_key(event)
        if dedupe_key is not None and not claim_dedupe_mark(project_id=event.project_id, dedupe_key=dedupe_key,
                                                            at=event.created_at, window=DEDUPE_WINDOW):
            return RecordResult(recorded=False)
        event.save(force_insert=True)
        add_to_counters(project_id=render.project_id, render_id=render.pk,
                        increments=counter_increments(event.event_type, event.share_id, event.traffic))
        if wanted:
            announce(event, wanted)
    summaries.changed(render.pk)
    return RecordResult(recorded=True, event=event)


def render_event_record(*, project, render_id, event_type: str, actor_kind: str, source_ip: str | None = None,
                        user_agent: str | None = None, metadata=None, at=None,
                        request_purpose: str | None = None) -> RecordResult | None:
    """`record_event` for the project's render named by id; None when the project has no such render.

    On PostgreSQL the render's lookup is part of the recording statement: one round trip in all.
    """
    at = at or now()
    if connection.vendor != "postgresql":
        render = render_in_project(project=project, render_id=render_id)
        if render is None:
            return None
        return record_event(render=render, event_type=event_type, actor_kind=actor_kind, source_ip=source_ip,
                            user_agent=user_agent, metadata=metadata, at=at, request_purpose=request_purpose)
    uid = parse_uuid(render_id)
    if uid is None:
        return None
    event = new_event(project_id=project.pk, render_id=uid, event_type=event_type, actor_kind=actor_kind,
                      source_ip=source_ip, user_agent=user_agent, metadata=metadata, at=at,
                      request_purpose=request_purpose)
    return _record_event_postgresql(event, check_render=True)


def _record_event_postgresql(event: EngagementEvent, *, check_render: bool = False) -> RecordResult | None:
    """The same recording as one statement (claim, event, counters): one round trip, no BEGIN/COMMIT.

    With `check_render` the statement also checks the render is the project's (None when not).
    """
    # In autocommit the statement is its own transaction; inside a caller's transaction a savepoint
    # keeps a failure from poisoning it, as the atomic block of the portable path does. What the listeners
    # of the event write (their outbox) is part of the statement; when it cannot be, the event is recorded
    # in a transaction that also holds what they write.
    wanted = wanted_announcements(event)
    writes = announcement_writes(event, wanted) if wanted else []
    with transaction.atomic() if writes is None or connection.in_atomic_block else nullcontext():
        recorded = record_in_one_statement(
            event=event, dedupe_key=event_dedupe_key(event), window=DEDUPE_WINDOW,
            increments=counter_increments(event.event_type, event.share_id, event.traffic),
            check_render=check_render, writes=writes or ())
        if recorded and writes is None:
            announce(event, wanted)
        if recorded and writes:
            for write in writes:
                if write.committed is not None:
                    transaction.on_commit(write.committed)
    if recorded is None:
        return None
    if not recorded:
        return RecordResult(recorded=False)
    summaries.changed(event.render_id)
    event._state.adding = False
    event._state.db = connection.alias
    return RecordResult(recorded=True, event=event)


def truncate_user_agent(user_agent: str | None) -> str | None:
    user_agent = (user_agent or "").replace("\x00", "")  # NUL cannot be stored in a text column
    if not user_agent:
        return None
    return user_agent[:USER_AGENT_MAX_LENGTH]


# Reclassifying traffic ---------------------------------------------------------------------------------

RECLASSIFY_CHUNK = 2000  # events judged (and their changes written) per transaction


def render_traffic_reclassify(*, project, first_day=None, end_day=None, progress=None) -> ReclassifyTally:
    """Judge the project's stored recipient events of [first_day, end_day) (UTC days) again by the current
    rules and move the renders' machine counters with every changed class. Events whose class a backfill
    line gave keep it. One chunk of events per transaction (its changes and their counters commit
    together), so memory stays one chunk; idempotent.
    """
    tally = ReclassifyTally()
    events = EngagementEvent.objects.filter(project=project, actor_kind=ActorKind.RECIPIENT,
                                            event_type__in=CLASSIFIED_EVENT_TYPES, traffic_given=False)
    if first_day is not None:
        events = events.filter(created_at__gte=datetime.combine(first_day, time.min, tzinfo=UTC))
    if end_day is not None:
        events = events.filter(created_at__lt=datetime.combine(end_day, time.min, tzinfo=UTC))
    events = events.order_by("id").values_list("id", "render_id", "share_id", "event_type", "user_agent",
                                                "source_ip", "request_purpose", "traffic", "machine_reason")
    after = None
    while True:
        chunk = list((events.filter(id__gt=after) if after is not None else events)[:RECLASSIFY_CHUNK])
        if not chunk:
            return tally
        after = chunk[-1][0]
        with transaction.atomic():
            tally.add(_reclassify_render_events(project=project, chunk=chunk))
        if progress:
            progress(len(chunk))


def _reclassify_render_events(*, project, chunk: list[tuple]) -> ReclassifyTally:
    tally = ReclassifyTally(read=len(chunk))
    changes: dict[tuple, list] = {}
    deltas: dict = {}
    for event_id, render_id, share_id, event_type, user_agent, source_ip, purpose, traffic, reason in chunk:
        verdict = event_verdict(event_type=event_type, actor_kind=ActorKind.RECIPIENT, user_agent=user_agent,
                                source_ip=source_ip, request_purpose=purpose)
        if (verdict.traffic, verdict.reason) == (traffic, reason):
            continue
        changes.setdefault((str(verdict.traffic), verdict.reason and str(verdict.reason)), []).append(event_id)
        if verdict.traffic == traffic:
            continue
        sign = 1 if verdict.is_machine else -1
        tally.to_machine += verdict.is_machine
        tally.to_human += not verdict.is_machine
        render_deltas = deltas.setdefault(render_id, {})
        for key in counter_increments(event_type, share_id, Traffic.MACHINE):
            if key.startswith(MACHINE_COUNTER_PREFIX):
                render_deltas[key] = render_deltas.get(key, 0) + sign
    for (traffic, reason), ids in changes.items():
        EngagementEvent.objects.filter(pk__in=ids).update(traffic=traffic, machine_reason=reason)
    for render_id in sorted(deltas):  # a fixed order avoids lock-order deadlocks
        add_to_counters(project_id=project.pk, render_id=render_id,
                        increments={key: amount for key, amount in deltas[render_id].items() if amount})
    if deltas:
        summaries.changed(*sorted(deltas))
    return tally
