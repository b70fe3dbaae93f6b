"""Load render events from NDJSON (one event per line), in batches, idempotently."""

import gc

from django.core.management.base import BaseCommand, CommandError

from apikeys.selectors import project_by_id_or_name
from engagement_platform.ndjson import NdjsonReader, open_input
from renders.backfill import BackfillRows, parse_render_event, render_events_backfill_lines

DEFAULT_BATCH_SIZE = 2000  # events per transaction; a few batches in memory at once
MAX_BATCH_SIZE = 10_000


class Command(BaseCommand):
    help = ("Backfill render events from an NDJSON file (or - for stdin): renderId, eventType, actorKind, "
            "shareId, sourceIp, userAgent, metadata, createdAt and an optional id. Bad lines, and lines naming "
            "renders or shares outside the project, are reported and skipped; good lines are kept. Events "
            "already stored (same id, or for lines without one, same content) count as duplicates.")
    stealth_options = ("stdin",)
    # `manage.py check` covers the project; a load command that may run many times in a row starts faster.
    requires_system_checks = []

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
        gc.freeze()  # what is loaded so far lives as long as the process: the collector need not rescan it
        with (open_input(file, stdin=options.get("stdin")) as source,
              NdjsonReader(source, parse=parse_render_event, prepare=BackfillRows(found.pk), stderr=self.stderr,
                           verbosity=verbosity) as reader):
            render_events_backfill_lines(project=found, reader=reader, batch_size=batch_size)
        reader.finish(self.stdout)
