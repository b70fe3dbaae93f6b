from django.core.management.base import BaseCommand

from retention.services import partitions_keep_ahead


class Command(BaseCommand):
    help = ("PostgreSQL: create the monthly partitions from the longest plan retention's cutoff to three months "
            "ahead, moving into them what the default partition holds for them (the worker does this hourly).")

    def handle(self, *args, **options):
        result = partitions_keep_ahead()
        self.stdout.write(f"Partitions created: {len(result.created)}; rows moved from default partitions: "
                          f"{result.rows_moved}.")
