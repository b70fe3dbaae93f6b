"""Load render events from NDJSON (one event per line), in batches, idempotently."""

import os
import sys

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from apikeys.selectors import project_by_id_or_name
from engagement_platform.jsonio import loads_line
from renders.backfill import parse_render_event, render_events_backfill
from reports.management.commands.backfill_message_events import Tally

DEFAULT_BATCH_SIZE = 1000
MAX_BATCH_SIZE = 10_000


class Command(BaseCommand):
    help = ("Backfill render events from an NDJSON file (or - for stdin): renderId, eventType, actorKind, "
            "shareId, sourceIp, userAgent, metadata, createdAt and an optional id. Bad lines, and lines naming "
            "renders or shares outside the project, are reported and skipped; good lines are kept. Events "
            "already stored (same id, or for lines without one, same content) count as duplicates.")
    stealth_options = ("stdin",)

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="Project id or name.")
        parser.add_argument("file", help="NDJSON file path, or - to read standard input.")
        parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                            help=f"Events per transaction (1..{MAX_BATCH_SIZE}, default {DEFAULT_BATCH_SIZE}).")

    def handle(self, *args, project, file, batch_size, verbosity, **options):
        found = project_by_id_or_name(project)
        if found is None:
            raise CommandError(f"No project with id or name {project!r}.")
        if found.is_deleted:
            raise CommandError(f"Project {found.name!r} is deleted.")
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise CommandError(f"--batch-size must be from 1 to {MAX_BATCH_SIZE}.")
        if file == "-":
            stream = options.get("stdin") or sys.stdin
            self._run(found, getattr(stream, "buffer", stream), batch_size, verbosity, total_bytes=None)
            return
        try:
            handle = open(file, "rb")
        except OSError as exc:
            raise CommandError(f"Cannot read {file}: {exc.strerror}.") from exc
        with handle:
            self._run(found, handle, batch_size, verbosity, total_bytes=os.fstat(handle.fileno()).st_size)

    def _run(self, project, stream, batch_size, verbosity, total_bytes):
        tally = Tally()
        show_progress = verbosity >= 1 and sys.stderr.isatty()
        with tqdm(total=total_bytes, unit="B", unit_scale=True, desc="backfill", disable=not show_progress,
                  file=sys.stderr) as progress:
            batch: list[tuple[int, dict]] = []
            for number, line in enumerate(stream, start=1):
                progress.update(len(line))
                event = self._parse_line(number, line, tally, verbosity)
                if event is not None:
                    batch.append((number, event))
                if len(batch) >= batch_size:
                    self._store(project, batch, tally, verbosity)
                    batch = []
            if batch:
                self._store(project, batch, tally, verbosity)
        if verbosity >= 1:
            tally.rejected_lines.sort()  # lines refused at store time are reported after their batch
            self.stdout.write(tally.summary())

    def _parse_line(self, number: int, line, tally: Tally, verbosity: int) -> dict | None:
        if isinstance(line, str):
            line = line.encode("utf-8")
        if not line.strip():
            return None
        try:
            raw = loads_line(line)
        except ValueError as exc:
            return self._reject(number, f"not valid JSON ({exc})", tally, verbosity)
        event, errors = parse_render_event(raw)
        if errors:
            reasons = "; ".join(f"{name}: {reason}" if name else reason for name, reason in errors.items())
            return self._reject(number, reasons, tally, verbosity)
        return event

    def _store(self, project, batch: list[tuple[int, dict]], tally: Tally, verbosity: int) -> None:
        result = render_events_backfill(project=project, events=[event for _number, event in batch])
        tally.add(result)
        for index, reason in result.rejected:
            self._reject(batch[index][0], reason, tally, verbosity)

    def _reject(self, number: int, reason: str, tally: Tally, verbosity: int) -> None:
        tally.reject(number)
        if verbosity >= 1:
            self.stderr.write(f"line {number}: rejected: {reason}")
        return None
