"""Apply the current traffic rules (contract section 6) to stored events again, and bring counters and
rollups in line."""

import sys

from django.core.management.base import BaseCommand
from tqdm import tqdm

from renders.services import render_traffic_reclassify
from reports.management.commands.rebuild_rollups import add_project_and_days_arguments, projects_and_days
from reports.services import ReclassifyTally, message_traffic_reclassify


class Command(BaseCommand):
    help = ("Judge stored events again by the current traffic rules: the share page's, pixel's and tracked link's "
            "render events and the report's opened and clicked message events, with everything known now (a "
            "click's delivery that arrived later included). Counters and rollups follow. Classes given by a "
            "backfill line or by `machine: true` are kept. UTC days: --from inclusive, --to exclusive. "
            "Running it twice changes nothing the second time.")

    def add_arguments(self, parser):
        add_project_and_days_arguments(parser)

    def handle(self, *args, project, first_day, end_day, verbosity, **options):
        projects, first_day, end_day = projects_and_days(project, first_day, end_day)
        tally = ReclassifyTally()
        with tqdm(unit=" events", disable=verbosity < 1 or not sys.stderr.isatty(), file=sys.stderr) as bar:
            for each in projects:
                for reclassify in (render_traffic_reclassify, message_traffic_reclassify):
                    tally.add(reclassify(project=each, first_day=first_day, end_day=end_day, progress=bar.update))
        if verbosity >= 1:
            self.stdout.write(f"events read {tally.read}, changed to machine {tally.to_machine}, "
                              f"changed to human {tally.to_human}.")
