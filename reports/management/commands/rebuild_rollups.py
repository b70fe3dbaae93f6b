"""Recompute the report's daily rollups from raw message events, idempotently."""

from datetime import date

from django.core.management.base import BaseCommand, CommandError

from apikeys.models import Project
from apikeys.selectors import project_by_id_or_name
from reports.services import rollups_rebuild


def parse_day(value) -> date | None:
    if value is None or isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"Not a date (YYYY-MM-DD): {value!r}.") from None


def add_project_and_days_arguments(parser) -> None:
    """`--project`, `--from` and `--to`, as every command that works on a project's UTC days takes them."""
    parser.add_argument("--project", help="Project id or name; every project when omitted.")
    parser.add_argument("--from", dest="first_day", help="First UTC day, YYYY-MM-DD.")
    parser.add_argument("--to", dest="end_day", help="UTC day to stop before, YYYY-MM-DD.")


def projects_and_days(project, first_day, end_day) -> tuple[list, date | None, date | None]:
    """The projects (the named one, or every one) and the parsed days of those arguments; CommandError if bad."""
    first_day, end_day = parse_day(first_day), parse_day(end_day)
    if first_day and end_day and first_day >= end_day:
        raise CommandError("--from must be earlier than --to.")
    if project is None:
        return list(Project.objects.order_by("created_at")), first_day, end_day
    found = project_by_id_or_name(project)
    if found is None:
        raise CommandError(f"No project with id or name {project!r}.")
    return [found], first_day, end_day


class Command(BaseCommand):
    help = ("Rebuild the daily rollups (and their distinct-recipient ledger) from raw message events. "
            "Days are UTC; --from is inclusive, --to exclusive; both default to every day with data. "
            "Rows that already match are left untouched, so running it twice changes nothing.")

    def add_arguments(self, parser):
        add_project_and_days_arguments(parser)

    def handle(self, *args, project, first_day, end_day, verbosity, **options):
        projects, first_day, end_day = projects_and_days(project, first_day, end_day)
        total_days = total_changed = 0
        for each in projects:
            result = rollups_rebuild(project=each, first_day=first_day, end_day=end_day)
            total_days += result.days
            total_changed += result.rows_changed
            if verbosity >= 2:
                self.stdout.write(f"{each.name}: {result.days} days, {result.rows_changed} rollup rows changed")
        if verbosity >= 1:
            self.stdout.write(f"rebuilt {total_days} days, {total_changed} rollup rows changed.")
