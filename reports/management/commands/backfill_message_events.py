"""Load message events from NDJSON (one section-4 event per line), in batches, idempotently."""

import gc

from django.core.management.base import BaseCommand, CommandError

from apikeys.selectors import project_by_id_or_name
from engagement_platform.ndjson import NdjsonReader, open_input
from reports.backfill import DEFERRED, PER_BATCH, BackfillPlan, message_events_backfill
from reports.validation import parse_backfilled_message_event

DEFAULT_BATCH_SIZE = 5000  # events per transaction: larger batches share their rollup rows more
MAX_BATCH_SIZE = 10_000
DEFAULT_CONNECTIONS = 2
MAX_CONNECTIONS = 8
# Parsed in the reading thread: its storers already keep both cores busy, and a parsing worker measured
# slower (docs/performance.md, issue 14: 0.24 of COPY with one against 0.28 without, the rerun 0.37 against 0.51).
MESSAGE_PARSE_WORKERS = 0


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
        # Everything loaded so far lives as long as the process: the collector need not scan it again while
        # the batches' many short-lived objects come and go.
        gc.freeze()
        plan = BackfillPlan(project=found, batch_size=batch_size, connections=connections, rollups=rollups)
        with (open_input(file, stdin=options.get("stdin")) as source,
              NdjsonReader(source, parse=parse_backfilled_message_event, stderr=self.stderr, verbosity=verbosity,
                           workers=MESSAGE_PARSE_WORKERS) as reader):
            message_events_backfill(plan=plan, reader=reader)
        reader.finish(self.stdout)
