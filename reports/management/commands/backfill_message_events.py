"""Load message events from NDJSON (one section-4 event per line), in batches, idempotently."""

import gc
import os
import queue
import sys
import threading
from dataclasses import dataclass

from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from tqdm import tqdm

from apikeys.selectors import project_by_id_or_name
from engagement_platform.jsonio import loads_line
from reports.services import DeferredRollups, ingest_message_events, ingestion_flush
from reports.validation import parse_message_event

DEFAULT_BATCH_SIZE = 5000  # events per transaction: larger batches share their rollup rows more
MAX_BATCH_SIZE = 10_000
# The summary names at most this many rejected line numbers; each rejection is also reported as it happens.
SUMMARY_LINE_NUMBERS = 50
# Parsed batches waiting for each storing connection: reading and validating the next batch overlaps
# storing this one, and memory stays a few batches whatever the file size.
BATCHES_AHEAD = 2
READER_JOIN_SECONDS = 5
DEFERRED, PER_BATCH = "deferred", "per-batch"
DEFAULT_CONNECTIONS = 2
MAX_CONNECTIONS = 8


@dataclass(frozen=True)
class Plan:
    project: object
    batch_size: int
    verbosity: int
    connections: int
    deferred: DeferredRollups | None


class Command(BaseCommand):
    help = ("Backfill message events from an NDJSON file (or - for stdin). Bad lines are reported and "
            "skipped, good lines kept; events already stored count as duplicates, so re-running is safe.")
    stealth_options = ("stdin",)
    # `manage.py check` covers the project; a load command that may run many times in a row starts faster.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="Project id or name.")
        parser.add_argument("file", help="NDJSON file path, or - to read standard input.")
        parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                            help=f"Events per transaction (1..{MAX_BATCH_SIZE}, default {DEFAULT_BATCH_SIZE}).")
        parser.add_argument("--rollups", choices=[DEFERRED, PER_BATCH], default=DEFERRED,
                            help="deferred (default): store the events, then recount the rollups of the days they "
                                 "touch once at the end (reports of those days catch up then); per-batch: update "
                                 "the rollups with every batch, as the API does. PostgreSQL; SQLite is per-batch.")
        parser.add_argument("--connections", type=int, default=DEFAULT_CONNECTIONS,
                            help=f"Database connections storing batches in parallel (1..{MAX_CONNECTIONS}, default "
                                 f"{DEFAULT_CONNECTIONS}; PostgreSQL, SQLite uses one).")

    def handle(self, *args, project, file, batch_size, verbosity, rollups, connections, **options):
        found = project_by_id_or_name(project)
        if found is None:
            raise CommandError(f"No project with id or name {project!r}.")
        if found.is_deleted:
            raise CommandError(f"Project {found.name!r} is deleted.")
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise CommandError(f"--batch-size must be from 1 to {MAX_BATCH_SIZE}.")
        if not 1 <= connections <= MAX_CONNECTIONS:
            raise CommandError(f"--connections must be from 1 to {MAX_CONNECTIONS}.")
        if connection.vendor != "postgresql":  # one writer at a time, and no recount path: batch by batch
            rollups, connections = PER_BATCH, 1
        # Everything loaded so far lives as long as the process: the collector need not scan it again while
        # the batches' many short-lived objects come and go.
        gc.freeze()
        plan = Plan(project=found, batch_size=batch_size, verbosity=verbosity, connections=connections,
                    deferred=DeferredRollups(found) if rollups == DEFERRED else None)
        if file == "-":
            stream = options.get("stdin") or sys.stdin
            stream = getattr(stream, "buffer", stream)
            self._run(plan, stream, total_bytes=None)
            return
        try:
            handle = open(file, "rb")
        except OSError as exc:
            raise CommandError(f"Cannot read {file}: {exc.strerror}.") from exc
        with handle:
            self._run(plan, handle, total_bytes=os.fstat(handle.fileno()).st_size)

    def _run(self, plan: "Plan", stream, total_bytes):
        """Store batches on `plan.connections` threads while a reader thread parses and validates the next ones.

        Each storer has its own queue, and every event of a message goes to the same one (by the message
        id): two storers never insert the same new message at once, which would make one wait for the
        other's commit.
        """
        tally = Tally()
        show_progress = plan.verbosity >= 1 and sys.stderr.isatty()
        lanes = [queue.Queue(maxsize=BATCHES_AHEAD) for _ in range(plan.connections)]
        stop = threading.Event()
        errors: list[BaseException] = []
        if plan.deferred:
            plan.deferred.start()
        with tqdm(total=total_bytes, unit="B", unit_scale=True, desc="backfill", disable=not show_progress,
                  file=sys.stderr) as progress:
            reader = threading.Thread(target=self._read, name="backfill-reader", daemon=True,
                                      args=(stream, plan.batch_size, tally, plan.verbosity, progress, lanes, stop))
            reader.start()
            try:
                if plan.connections == 1:
                    self._store(plan, lanes[0], tally, errors, stop)
                else:
                    storers = [threading.Thread(target=self._store_on_own_connection, name=f"backfill-store-{n}",
                                                args=(plan, lane, tally, errors, stop))
                               for n, lane in enumerate(lanes)]
                    for storer in storers:
                        storer.start()
                    for storer in storers:
                        storer.join()
            finally:
                stop.set()
                # Bounded: after a failure the reader may sit in a blocking read of standard input;
                # it is a daemon thread and goes with the process.
                reader.join(timeout=READER_JOIN_SECONDS)
        if plan.deferred:
            self._recount(plan, show_progress, failed=bool(errors))
        if errors:
            raise errors[0]
        ingestion_flush()
        if plan.verbosity >= 1:
            self.stdout.write(tally.summary())

    def _store(self, plan: "Plan", batches: queue.Queue, tally: "Tally", errors: list, stop: threading.Event):
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
                if plan.deferred:
                    result = plan.deferred.store(batch, wait_for_flush=False)
                else:
                    result = ingest_message_events(project=plan.project, events=batch, wait_for_flush=False)
            except BaseException as exc:  # noqa: BLE001 - raised by the command once every storer stopped
                errors.append(exc)
                stop.set()
                return
            tally.add(result)

    def _store_on_own_connection(self, *args):
        try:
            self._store(*args)
        finally:
            connection.close()

    def _recount(self, plan: "Plan", show_progress: bool, *, failed: bool):
        """Recount the deferred days; after a failure, still recount what was stored, if the database lets us."""
        days, _runs = plan.deferred.days_to_recount()
        if plan.verbosity >= 2 and days:
            self.stderr.write(f"recounting the rollups of {_days(len(days))}")
        try:
            with tqdm(total=len(days), unit="day", desc="recount", disable=not show_progress,
                      file=sys.stderr) as progress:
                plan.deferred.finish(progress=progress.update, connections=plan.connections)
        except Exception:
            if not failed:
                raise
            self.stderr.write(f"the rollups of {_days(len(days))} were not recounted: running this backfill again "
                              f"(or rebuild_rollups) recounts them")

    def _read(self, stream, batch_size, tally, verbosity, progress, lanes: list[queue.Queue], stop: threading.Event):
        """Reader thread: parse lines into one batch per lane (by message id); None ends each lane, and a
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
            for number, line in enumerate(stream, start=1):
                progress.update(len(line))
                event = self._parse_line(number, line, tally, verbosity)
                if event is None:
                    continue
                lane = hash(event["message_id"]) % len(lanes)
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

    def _parse_line(self, number: int, line, tally: "Tally", verbosity: int) -> dict | None:
        if isinstance(line, str):
            line = line.encode("utf-8")
        if not line.strip():
            return None
        try:
            raw = loads_line(line)
        except ValueError as exc:
            return self._reject(number, f"not valid JSON ({exc})", tally, verbosity)
        event, errors = parse_message_event(raw)
        if errors:
            reasons = "; ".join(f"{field}: {reason}" if field else reason for field, reason in errors.items())
            return self._reject(number, reasons, tally, verbosity)
        return event

    def _reject(self, number: int, reason: str, tally: "Tally", verbosity: int) -> None:
        tally.reject(number)
        if verbosity >= 1:
            self.stderr.write(f"line {number}: rejected: {reason}")
        return None


def _days(count: int) -> str:
    return f"{count} day" if count == 1 else f"{count} days"


class Tally:
    """Running totals in constant memory (only the first rejected line numbers are kept)."""

    def __init__(self):
        self.accepted = self.duplicates = self.rejected = 0
        self.rejected_lines: list[int] = []
        self._adding = threading.Lock()  # storers add from their own threads

    def add(self, result) -> None:
        with self._adding:
            self.accepted += result.accepted
            self.duplicates += result.duplicates

    def reject(self, number: int) -> None:
        self.rejected += 1
        if len(self.rejected_lines) < SUMMARY_LINE_NUMBERS:
            self.rejected_lines.append(number)

    def summary(self) -> str:
        text = f"accepted {self.accepted}, duplicates {self.duplicates}, rejected {self.rejected}"
        if self.rejected:
            lines = ", ".join(str(number) for number in self.rejected_lines)
            more = self.rejected - len(self.rejected_lines)
            text += f" (lines {lines}" + (f" and {more} more)" if more else ")")
        return text + "."
