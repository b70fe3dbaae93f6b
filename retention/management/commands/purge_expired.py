from datetime import datetime

from django.core.management.base import BaseCommand, CommandError

from engagement_platform.clock import iso_seconds
from retention.services import expired_purge


class Command(BaseCommand):
    help = ("Enforce each project's plan retention: delete the events, visits and derived rows older than it, "
            "and (PostgreSQL) drop the monthly partitions older than the longest retention.")

    def add_arguments(self, parser):
        parser.add_argument("--at", help="Purge as of this ISO 8601 moment with a zone (default: now).")

    def handle(self, *args, at=None, **options):
        moment = None
        if at is not None:
            try:
                moment = datetime.fromisoformat(at.replace("Z", "+00:00"))
            except ValueError as exc:
                raise CommandError(f"--at: {exc}") from None
            if moment.tzinfo is None:
                raise CommandError("--at needs a zone (Z or an offset).")
        result = expired_purge(at=moment)
        months = sorted({name[-7:] for name in result.partitions_dropped})
        self.stdout.write(f"Partitions dropped: {len(result.partitions_dropped)} "
                          f"in {result.partition_seconds * 1000:.1f} ms"
                          + (f" (months {months[0]} to {months[-1]})" if months else ""))
        for project in result.projects:
            renders, reports = project.renders, project.reports
            self.stdout.write(
                f"Project {project.project_id} (kept from {iso_seconds(project.cutoff)}): "
                f"{renders.events} render events, {renders.visits} visits, {renders.dedupe_marks} dedupe marks, "
                f"{reports.events} message events, {reports.messages} messages, {reports.derived_rows} derived rows "
                f"deleted; {len(reports.recounted)} days or periods recounted; {project.seconds * 1000:.0f} ms")
