"""Backfilling message events: the pipeline behind `manage.py backfill_message_events`.

A reader thread takes the parsed lines of the shared NDJSON reader (`engagement_platform.ndjson`) and
deals them into one batch per storing connection, by message id, while the storers write the batches
before: reading and validating the next batch overlaps storing this one, and memory stays a few
batches whatever the file size. Every event of a message goes to the same storer, so two storers
never insert the same new message at once (which would make one wait for the other's commit).
With deferred rollups (PostgreSQL) the days' rollups are recounted once, at the end.
"""

import queue
import threading
from dataclasses import dataclass

from django.db import connection

from reports.services import DeferredRollups, ingest_message_events, ingestion_flush

# Parsed batches waiting for each storing connection.
BATCHES_AHEAD = 2
READER_JOIN_SECONDS = 5
DEFERRED, PER_BATCH = "deferred", "per-batch"


@dataclass(frozen=True)
class BackfillPlan:
    project: object
    batch_size: int
    connections: int
    rollups: str  # DEFERRED or PER_BATCH

    def for_backend(self) -> "BackfillPlan":
        """SQLite has one writer at a time and no recount path: batch by batch on one connection."""
        if DeferredRollups.supported():
            return self
        return BackfillPlan(project=self.project, batch_size=self.batch_size, connections=1, rollups=PER_BATCH)


def message_events_backfill(*, plan: BackfillPlan, reader) -> None:
    """Store every good line of `reader` (an `NdjsonReader` of message events) as `plan` says.

    Totals go to `reader.tally`. A failure (reading or storing) stops every thread and is raised
    once they stopped; after it, what was stored is still recounted when the database allows.
    """
    plan = plan.for_backend()
    deferred = DeferredRollups(plan.project) if plan.rollups == DEFERRED else None
    lanes = [queue.Queue(maxsize=BATCHES_AHEAD) for _ in range(plan.connections)]
    stop = threading.Event()
    errors: list[BaseException] = []
    if deferred:
        deferred.start()
    reading = threading.Thread(target=_read, name="backfill-reader", daemon=True,
                               args=(reader, plan.batch_size, lanes, stop))
    reading.start()
    try:
        if plan.connections == 1:
            _store(plan, deferred, lanes[0], reader.tally, errors, stop)
        else:
            storers = [threading.Thread(target=_store_on_own_connection, name=f"backfill-store-{n}",
                                        args=(plan, deferred, lane, reader.tally, errors, stop))
                       for n, lane in enumerate(lanes)]
            for storer in storers:
                storer.start()
            for storer in storers:
                storer.join()
    finally:
        stop.set()
        # Bounded: after a failure the reader may sit in a blocking read of standard input;
        # it is a daemon thread and goes with the process.
        reading.join(timeout=READER_JOIN_SECONDS)
    if deferred:
        _recount(deferred, plan, reader, failed=bool(errors))
    if errors:
        raise errors[0]
    ingestion_flush()


def _store(plan: BackfillPlan, deferred: DeferredRollups | None, batches: queue.Queue, tally, errors: list,
           stop: threading.Event) -> None:
    """Take this storer's batches until the end mark or a failure anywhere."""
    while not stop.is_set():
        try:
            batch = batches.get(timeout=0.1)
        except queue.Empty:
            continue
        if batch is None:
            return
        if isinstance(batch, BaseException):  # reading failed: this lane's batches read before it are stored
            errors.append(batch)
            return
        try:
            # A rerun stores again whatever a crash lost, so batches need not wait for the disk;
            # the flush at the end makes all of them durable before the summary says they are stored.
            if deferred:
                result = deferred.store(batch, wait_for_flush=False)
            else:
                result = ingest_message_events(project=plan.project, events=batch, wait_for_flush=False)
        except BaseException as exc:  # noqa: BLE001 - raised by the service once every storer stopped
            errors.append(exc)
            stop.set()
            return
        tally.add(accepted=result.accepted, duplicates=result.duplicates)


def _store_on_own_connection(*args) -> None:
    try:
        _store(*args)
    finally:
        connection.close()


def _recount(deferred: DeferredRollups, plan: BackfillPlan, reader, *, failed: bool) -> None:
    """Recount the deferred days; after a failure, still recount what was stored, if the database lets us."""
    days, _runs = deferred.days_to_recount()
    if days:
        reader.note(f"recounting the rollups of {_days(len(days))}")
    try:
        with reader.progress_bar(total=len(days), unit="day", desc="recount") as progress:
            deferred.finish(progress=progress.update, connections=plan.connections)
    except Exception:
        if not failed:
            raise
        reader.note(f"the rollups of {_days(len(days))} were not recounted: running this backfill again "
                    f"(or rebuild_rollups) recounts them", verbosity=1)


def _read(reader, batch_size: int, lanes: list[queue.Queue], stop: threading.Event) -> None:
    """Reader thread: deal parsed lines into one batch per lane (by message id); None ends each lane, and a
    reading error is handed to each lane after its batches."""

    def hand_over(lane: queue.Queue, item) -> bool:
        while not stop.is_set():
            try:
                lane.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    try:
        batches: list[list] = [[] for _ in lanes]
        count = len(lanes)
        for _number, event in reader.items():
            lane = hash(event["message_id"]) % count if count > 1 else 0
            batch = batches[lane]
            batch.append(event)
            if len(batch) >= batch_size:
                if not hand_over(lanes[lane], batch):
                    return
                batches[lane] = []
        for lane, batch in zip(lanes, batches, strict=True):
            if batch and not hand_over(lane, batch):
                return
        for lane in lanes:
            hand_over(lane, None)
    except BaseException as exc:  # noqa: BLE001 - handed to every storer, after the batches read before it
        for lane in lanes:
            hand_over(lane, exc)


def _days(count: int) -> str:
    return f"{count} day" if count == 1 else f"{count} days"
