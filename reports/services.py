"""Writes on the report side: channels, message-event ingestion and the daily rollups."""

import threading
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date

from django.db import connection, transaction
from django.db.models import Q
from django.db.models.functions import TruncDate

from engagement_platform.clock import now
from engagement_platform.durability import flush_commits
from engagement_platform.ids import new_id
from engagement_platform.traffic import Verdict
from reports.classification import (
    earliest_deliveries,
    earliest_deliveries_of_messages,
    given_verdict,
    needs_delivery_time,
    verdict_by_rules,
)
from reports.grains import day_bounds, day_start, utc_day
from reports.models import (
    DEFAULT_CHANNEL_NAME,
    USER_AGENT_MAX_LENGTH,
    Channel,
    DailyFirstTouch,
    DailyRollup,
    MessageEvent,
    MessageEventType,
)
from reports.rollups import definition as rule
from reports.rollups.sql import (
    abandoned_runs,
    days_of_periods,
    deferred_rollups_supported,
    first_touches_pending,
    hold_run_lock,
    ingest_batch,
    lock_project_rollups,
    mark_days_pending,
    pending_days,
    periods_of,
    rebuild_day,
    rebuild_periods,
    recount_days,
    store_batch_pipelined,
    write_pending_first_touches,
)
from reports.selectors import report_bodies
from reports.validation import email_domain


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    duplicates: int


@dataclass(frozen=True)
class RebuildResult:
    days: int
    rows_changed: int


# Channels ------------------------------------------------------------------------------------


def channel_get_or_create(*, project, channel_id: uuid.UUID) -> Channel:
    """The project's channel with the client UUID `channel_id`, created on first use."""
    channel_id = _as_uuid(channel_id)
    return _channels_by_external_id(project=project, external_ids={channel_id})[channel_id]


def _as_uuid(value) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def default_channel_for(*, project) -> Channel:
    """The project's default channel (used by emails that name none), created on demand, one per project."""
    found = Channel.objects.filter(project=project, is_default=True).first()
    if found is not None:
        return found
    channel_id = new_id()
    # Concurrent callers race on the one-default-per-project unique index; the loser inserts nothing.
    Channel.objects.bulk_create(
        [Channel(id=channel_id, project=project, external_id=channel_id, name=DEFAULT_CHANNEL_NAME,
                 is_default=True)],
        ignore_conflicts=True,
    )
    return Channel.objects.get(project=project, is_default=True)


def _channels_by_external_id(*, project, external_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Channel]:
    wanted = set(external_ids)
    found = {c.external_id: c for c in Channel.objects.filter(project=project, external_id__in=wanted)}
    for make_id in (lambda external_id: external_id, lambda external_id: new_id()):
        missing = sorted(wanted - found.keys())
        if not missing:
            break
        # The first pass keeps the client's UUID as the row id; a UUID that another project already
        # holds gets a fresh row id on the second pass, so projects never share or reveal a channel.
        Channel.objects.bulk_create(
            [Channel(id=make_id(external_id), project=project, external_id=external_id) for external_id in missing],
            ignore_conflicts=True,
        )
        found.update({c.external_id: c for c in Channel.objects.filter(project=project, external_id__in=missing)})
    return found


# Ingestion -----------------------------------------------------------------------------------


def ingest_message_events(*, project, events: list[dict], wait_for_flush: bool = True) -> IngestResult:
    """Store validated message events idempotently and count them into the daily rollups.

    Each event is a dict with `id`, `type`, `message_id`, `channel_id` (UUID), `from_address`,
    `recipient`, `occurred_at` (aware), `url` and `user_agent`; optionally `machine` (the client's flag),
    `traffic` and `machine_reason` (a class given by a backfill line), and for events of the platform's
    own public routes `source_ip` and `request_purpose`. `opened` and `clicked` are classified here
    (`reports.classification`).
    Channels and messages are created on first use. An event whose `id` the project already
    has (or that repeats one earlier in the batch) is a duplicate and changes no figure.
    Everything happens in one transaction, exact under concurrent batches.

    Bulk loads may pass `wait_for_flush=False`: on PostgreSQL the commit then returns before its
    WAL is on disk (a server crash can lose the last moments of batches, which a rerun stores
    again as new), and they end with `ingestion_flush()`, after which every batch is durable.
    """
    if not events:
        return IngestResult(accepted=0, duplicates=0)
    accepted = _ingest(project=project, events=events, wait_for_flush=wait_for_flush)
    if accepted:
        report_bodies.changed(project.pk)
    return IngestResult(accepted=accepted, duplicates=len(events) - accepted)


def ingestion_flush() -> None:
    """Make every batch stored with `wait_for_flush=False` on this connection durable."""
    flush_commits()


class DeferredRollups:
    """A bulk load that stores events now and recounts the rollups of their days once, at the end (PostgreSQL).

    Per-batch rollup upkeep (first touches and rollup increments) costs more than storing the
    events themselves; a backfill defers it. Each UTC day is marked (committed) before any event of
    it is stored; `finish` recounts the marked days set-based under the exclusive rollup lock and
    clears the marks in the same transactions. Until then reports of those days lag behind. A run
    that dies leaves its marks, and the next deferred run of the project adopts and recounts them.

    `store` may be called from several threads (each has its own connection); `start` and
    `finish` on one thread, whose connection holds the run's lock.
    """

    DAYS_PER_RECOUNT = 31  # days recounted per transaction

    def __init__(self, project):
        self.project = project
        self.run = uuid.uuid4()
        self._marked: set[date] = set()
        self._channels: dict[uuid.UUID, uuid.UUID] = {}
        self._marking = threading.Lock()

    @staticmethod
    def supported() -> bool:
        """PostgreSQL only: SQLite has one writer at a time and no recount path (it loads batch by batch)."""
        return deferred_rollups_supported()

    def start(self) -> None:
        self._run_lock = hold_run_lock(self.run)

    def store(self, events: list[dict], *, wait_for_flush: bool = False) -> IngestResult:
        if not events:
            return IngestResult(accepted=0, duplicates=0)
        days = {utc_day(event["occurred_at"]) for event in events}
        with self._marking:  # held while marking: no thread stores a day before its mark is committed
            new_days = days - self._marked
            if new_days:
                mark_days_pending(project_id=self.project.pk, run=self.run, days=new_days)
                self._marked |= new_days
        if connection.in_atomic_block:  # inside a caller's transaction: the batch goes in under a savepoint
            accepted = _ingest(project=self.project, events=events, wait_for_flush=wait_for_flush,
                               into_rollups=False)
        else:
            rows, firsts = _event_rows(events, project=self.project)
            accepted = store_batch_pipelined(project_id=self.project.pk, received_at=now(),
                                             messages=_message_rows(project=self.project, firsts=firsts,
                                                                    channels=self._channel_ids(firsts)),
                                             events=rows, wait_for_flush=wait_for_flush)
        if accepted:
            report_bodies.changed(self.project.pk)  # partial days of a report read raw events
        return IngestResult(accepted=accepted, duplicates=len(events) - accepted)

    def _channel_ids(self, firsts: dict[str, dict]) -> dict[uuid.UUID, uuid.UUID]:
        """Channel row ids by client channel id, kept for the run: a channel is looked up (or created) once."""
        wanted = {_as_uuid(event["channel_id"]) for event in firsts.values()}
        with self._marking:
            missing = wanted - self._channels.keys()
            if missing:
                self._channels.update({external_id: channel.pk for external_id, channel in
                                       _channels_by_external_id(project=self.project, external_ids=missing).items()})
            return {external_id: self._channels[external_id] for external_id in wanted}

    def days_to_recount(self) -> tuple[list[date], list[uuid.UUID]]:
        """This run's marked days and those of runs that died, and the runs whose marks they clear."""
        runs = [self.run, *abandoned_runs(project_id=self.project.pk, own=self.run)]
        return sorted(self._marked | pending_days(project_id=self.project.pk, runs=runs)), runs

    def finish(self, progress: Callable[[int], None] | None = None, *, connections: int = 1) -> int:
        """Recount every day to recount, `connections` chunks of days at a time; returns how many days.

        Each round holds the exclusive rollup lock on this thread's connection while its chunks are
        recounted and committed on connections of their own, so no ingestion batch of the project
        commits in between; batches waiting for the lock go ahead between rounds.
        """
        days, runs = self.days_to_recount()
        chunks = [days[start:start + self.DAYS_PER_RECOUNT] for start in range(0, len(days), self.DAYS_PER_RECOUNT)]
        for first in range(0, len(chunks), connections):
            round_chunks = chunks[first:first + connections]
            with transaction.atomic():
                lock_project_rollups(project_id=self.project.pk, exclusive=True)
                if len(round_chunks) == 1:
                    recount_days(project_id=self.project.pk, days=round_chunks[0], runs=runs)
                else:
                    self._recount_in_parallel(round_chunks, runs)
            report_bodies.changed(self.project.pk)
            if progress:
                progress(sum(len(chunk) for chunk in round_chunks))
        self._run_lock.release()
        return len(days)

    def _recount_in_parallel(self, chunks: list[list[date]], runs: list[uuid.UUID]) -> None:
        errors: list[BaseException] = []

        def recount(chunk):
            try:
                with transaction.atomic():
                    recount_days(project_id=self.project.pk, days=chunk, runs=runs)
            except BaseException as exc:  # noqa: BLE001 - raised below, on the calling thread
                errors.append(exc)
            finally:
                connection.close()

        workers = [threading.Thread(target=recount, args=(chunk,), name="recount") for chunk in chunks]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        if errors:
            raise errors[0]


class _FirstTouchesNeeded(Exception):
    def __init__(self, days: list[date]):
        super().__init__(days)
        self.days = days


def _ingest(*, project, events: list[dict], wait_for_flush: bool, into_rollups: bool = True) -> int:
    """One pass over the batch in Python to make its rows, then `ingest_batch` in one transaction.

    Counting into the rollups needs the first touches of the batch's days: days a deferred backfill
    left without them (`FirstTouchesPending`) get them written first, and the batch starts again.
    """
    rows, firsts = _event_rows(events, project=project)
    days = {utc_day(row[3]) for row in rows} if into_rollups else set()
    while True:
        try:
            return _ingest_once(project=project, rows=rows, firsts=firsts, days=days,
                                wait_for_flush=wait_for_flush, into_rollups=into_rollups)
        except _FirstTouchesNeeded as needed:
            first_touches_write(project=project, days=needed.days)


def _ingest_once(*, project, rows, firsts, days, wait_for_flush: bool, into_rollups: bool) -> int:
    received_at = now()
    with transaction.atomic():
        lock_project_rollups(project_id=project.pk, exclusive=False)
        # Checked under the shared lock: no recount can take a day's first touches away until this commits.
        pending = first_touches_pending(project_id=project.pk, days=days) if days else []
        if pending:
            raise _FirstTouchesNeeded(pending)  # leaves the transaction (or savepoint) and its lock
        external_ids = {_as_uuid(event["channel_id"]) for event in firsts.values()}
        channels = {external_id: channel.pk for external_id, channel in
                    _channels_by_external_id(project=project, external_ids=external_ids).items()}
        messages = _message_rows(project=project, firsts=firsts, channels=channels)
        return ingest_batch(project_id=project.pk, received_at=received_at, messages=messages, events=rows,
                            wait_for_flush=wait_for_flush, into_rollups=into_rollups)


def first_touches_write(*, project, days: Iterable[date]) -> None:
    """Write the first touches of days a deferred backfill left without them: those of `days`, and of every
    other day of their weeks and months, so those periods' ledgers (rewritten with them) are complete at once."""
    with transaction.atomic():
        lock_project_rollups(project_id=project.pk, exclusive=True)
        write_pending_first_touches(project_id=project.pk, days=first_touches_pending(
            project_id=project.pk, days=days_of_periods(periods_of(days))))


def _event_rows(events: list[dict], *, project) -> tuple[list[tuple], dict[str, dict]]:
    """The batch's event rows for `ingest_batch` (the first of each repeated id), each with its traffic class,
    and each message's first event."""
    seen: set[str] = set()
    kept: list[tuple[dict, Verdict | None]] = []
    firsts: dict[str, dict] = {}  # client message id -> the batch's first event of it (the message's attributes)
    timed: set[str] = set()  # messages of clicks whose class the click-timing rule may decide
    for event in events:
        event_id = event["id"]
        if event_id in seen:
            continue
        seen.add(event_id)
        message_id = event["message_id"]
        if message_id not in firsts:
            firsts[message_id] = event
        given = given_verdict(event)
        if given is None and needs_delivery_time(event["type"], None):
            timed.add(message_id)
        kept.append((event, given))
    deliveries = earliest_deliveries(
        project_id=project.pk, client_message_ids=timed,
        in_batch=[(event["message_id"], event["occurred_at"]) for event, _given in kept
                  if event["type"] == MessageEventType.DELIVERED and event["message_id"] in timed],
    ) if timed else {}
    rows = []
    for event, given in kept:
        user_agent = event.get("user_agent")
        user_agent = user_agent[:USER_AGENT_MAX_LENGTH] if user_agent else None
        verdict = given or verdict_by_rules(event_type=event["type"], user_agent=user_agent,
                                            source_ip=event.get("source_ip"), purpose=event.get("request_purpose"),
                                            occurred_at=event["occurred_at"],
                                            delivered_at=deliveries.get(event["message_id"]))
        rows.append((event["id"], event["type"], event["message_id"], event["occurred_at"], event.get("url"),
                     user_agent, verdict.traffic, verdict.reason, given is not None, event.get("source_ip"),
                     event.get("request_purpose")))
    return rows, firsts


def _message_rows(*, project, firsts: dict[str, dict], channels: dict[uuid.UUID, uuid.UUID]) -> list[tuple]:
    """The message rows for `ingest_batch`, one per client message id, from its first event of the batch."""
    return [
        (channels[_as_uuid(event["channel_id"])], message_id, event["from_address"],
         email_domain(event["from_address"]), event["recipient"].strip().lower())
        for message_id, event in firsts.items()
    ]


# Rebuilding rollups from raw events -----------------------------------------------------------


def rollups_rebuild(*, project, first_day: date | None = None, end_day: date | None = None) -> RebuildResult:
    """Recompute the rollups of days in [first_day, end_day) from raw events, one day per transaction.

    Idempotent: rows that already match are left untouched; returns how many rows changed.
    """
    days = _days_with_report_data(project=project, first_day=first_day, end_day=end_day)
    changed = 0
    for day in days:
        with transaction.atomic():
            lock_project_rollups(project_id=project.pk, exclusive=True)
            day_changed = _rebuild_day(project=project, day=day)
            if day_changed:
                report_bodies.changed(project.pk)
            changed += day_changed
    periods_rebuild(project=project, periods=periods_of(days))  # the weeks and months holding them, whole
    return RebuildResult(days=len(days), rows_changed=changed)


def periods_rebuild(*, project, periods: Iterable[tuple[str, date]]) -> None:
    """Recompute the exact-uniques ledgers and rollups of (period, start) pairs from raw events, one per
    transaction."""
    for period in sorted(set(periods)):
        with transaction.atomic():
            lock_project_rollups(project_id=project.pk, exclusive=True)
            rebuild_periods(project_id=project.pk, periods=[period])
        report_bodies.changed(project.pk)


def _days_with_report_data(*, project, first_day: date | None, end_day: date | None) -> list[date]:
    events = MessageEvent.objects.filter(project=project)
    rollups = DailyRollup.objects.filter(project=project)
    touches = DailyFirstTouch.objects.filter(project=project)
    if first_day is not None:
        events = events.filter(occurred_at__gte=day_start(first_day))
        rollups, touches = rollups.filter(day__gte=first_day), touches.filter(day__gte=first_day)
    if end_day is not None:
        events = events.filter(occurred_at__lt=day_start(end_day))
        rollups, touches = rollups.filter(day__lt=end_day), touches.filter(day__lt=end_day)
    days = set(events.annotate(utc_day=TruncDate("occurred_at", tzinfo=UTC))
               .order_by().values_list("utc_day", flat=True).distinct())
    days |= set(rollups.order_by().values_list("day", flat=True).distinct())
    days |= set(touches.order_by().values_list("day", flat=True).distinct())
    return sorted(days)


def _rebuild_day(*, project, day: date) -> int:
    return _apply_rollup_rows(project=project, day=day, expected=rebuild_day(project_id=project.pk, day=day))


def _apply_rollup_rows(*, project, day: date, expected: dict[tuple, dict[str, int]]) -> int:
    """Make the day's rollup rows equal `expected`, touching only rows that differ."""
    existing = {tuple(getattr(row, column) for column in rule.KEY_COLUMNS): row
                for row in DailyRollup.objects.filter(project=project, day=day)}
    to_create, to_update = [], []
    for key, counts in expected.items():
        values = {column: counts.get(column, 0) for column in rule.FIGURE_COLUMNS}
        row = existing.pop(key, None)
        if row is None:
            to_create.append(DailyRollup(project=project, day=day, **dict(zip(rule.KEY_COLUMNS, key, strict=True)),
                                         **values))
        elif any(getattr(row, column) != value for column, value in values.items()):
            for column, value in values.items():
                setattr(row, column, value)
            to_update.append(row)
    DailyRollup.objects.bulk_create(to_create)
    if to_update:
        DailyRollup.objects.bulk_update(to_update, list(rule.FIGURE_COLUMNS))
    if existing:
        DailyRollup.objects.filter(pk__in=[row.pk for row in existing.values()]).delete()
    return len(to_create) + len(to_update) + len(existing)


# Reclassifying traffic ------------------------------------------------------------------------

RECLASSIFY_CHUNK = 2000  # events judged (and their changes written) per round trip


@dataclass
class ReclassifyTally:
    """What a reclassification read and changed (contract section 6's last line)."""

    read: int = 0
    to_machine: int = 0
    to_human: int = 0

    def add(self, other: "ReclassifyTally") -> None:
        self.read += other.read
        self.to_machine += other.to_machine
        self.to_human += other.to_human


def message_traffic_reclassify(*, project, first_day: date | None = None, end_day: date | None = None,
                               progress: Callable[[int], None] | None = None) -> ReclassifyTally:
    """Judge the project's stored `opened` and `clicked` events of [first_day, end_day) again by the current
    rules, with everything known now (a click's `delivered` stored after it included), and bring the
    rollups in line. Events whose class was given (`machine: true`, a backfill line's `traffic`) keep it.

    One UTC day per transaction, under the exclusive rollup lock: the day's changed classes and its
    rebuilt rollups commit together; then the weeks and months holding changed days are rebuilt.
    Memory stays one chunk of events whatever the number of events. Idempotent.
    """
    tally = ReclassifyTally()
    changed_days = []
    for day in _days_with_report_data(project=project, first_day=first_day, end_day=end_day):
        with transaction.atomic():
            lock_project_rollups(project_id=project.pk, exclusive=True)
            day_tally = _reclassify_day(project=project, day=day, progress=progress)
            if day_tally.to_machine or day_tally.to_human:
                _rebuild_day(project=project, day=day)
                changed_days.append(day)
        tally.add(day_tally)
    for period in sorted(periods_of(changed_days)):
        with transaction.atomic():
            lock_project_rollups(project_id=project.pk, exclusive=True)
            rebuild_periods(project_id=project.pk, periods=[period])
    if changed_days:
        report_bodies.changed(project.pk)
    return tally


def _reclassify_day(*, project, day: date, progress) -> ReclassifyTally:
    tally = ReclassifyTally()
    start, end = day_bounds(day)
    # In the order of the (project, occurred_at) index, resumed after the last event read: each chunk is
    # one index range, whatever the size of the day.
    events = (MessageEvent.objects.filter(project=project, occurred_at__lt=end, type__in=rule.CLASSIFIED_TYPES,
                                          traffic_given=False)
              .order_by("occurred_at", "id").values_list("id", "type", "user_agent", "source_ip", "request_purpose",
                                                         "occurred_at", "traffic", "machine_reason", "message_id"))
    after = None
    while True:
        # The plain lower bound keeps the index range tight; the OR resumes within equal timestamps.
        page = (events.filter(Q(occurred_at__gt=after[0]) | Q(occurred_at=after[0], id__gt=after[1]),
                              occurred_at__gte=after[0])
                if after is not None else events.filter(occurred_at__gte=start))
        chunk = list(page[:RECLASSIFY_CHUNK])
        if not chunk:
            return tally
        after = (chunk[-1][5], chunk[-1][0])
        clicked = {row[8] for row in chunk if row[1] == MessageEventType.CLICKED}
        deliveries = earliest_deliveries_of_messages(project_id=project.pk, message_ids=clicked) if clicked else {}
        changes: dict[tuple, list] = defaultdict(list)
        for event_id, type_, user_agent, source_ip, purpose, occurred_at, traffic, reason, message_id in chunk:
            verdict = verdict_by_rules(event_type=type_, user_agent=user_agent, source_ip=source_ip, purpose=purpose,
                                       occurred_at=occurred_at, delivered_at=deliveries.get(message_id))
            if (verdict.traffic, verdict.reason) != (traffic, reason):
                changes[(str(verdict.traffic), verdict.reason and str(verdict.reason))].append(event_id)
                if verdict.traffic != traffic:
                    if verdict.is_machine:
                        tally.to_machine += 1
                    else:
                        tally.to_human += 1
        for (traffic, reason), ids in changes.items():
            MessageEvent.objects.filter(pk__in=ids).update(traffic=traffic, machine_reason=reason)
        tally.read += len(chunk)
        if progress:
            progress(len(chunk))
