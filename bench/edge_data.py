"""Write the edge data (first touches with their last times, slice rollups) of a bulk-loaded project.

A bulk load (bench/bulk.py) writes raw events and the daily rollups by SQL, but not the data kept
for window edges inside a day. This marks every day of the project as having its first touches
pending, as a deferred backfill leaves them, and writes them with the platform's own service, a
few days per transaction, so the report reads its edges as it does after live ingestion:

    python manage.py shell -c "from bench.edge_data import write; write('<project id>')"
"""

import time

from apikeys.models import Project
from reports.models import DailyRollup, FirstTouchesPending
from reports.services import first_touches_write

DAYS_PER_TRANSACTION = 5


def write(project_id: str) -> None:
    project = Project.objects.get(pk=project_id)
    days = sorted(set(DailyRollup.objects.filter(project=project).values_list("day", flat=True)))
    FirstTouchesPending.objects.bulk_create([FirstTouchesPending(project=project, day=day) for day in days],
                                            ignore_conflicts=True)
    started = time.perf_counter()
    for start in range(0, len(days), DAYS_PER_TRANSACTION):
        first_touches_write(project=project, days=days[start:start + DAYS_PER_TRANSACTION])
    print(f"edge data of {len(days)} days written in {time.perf_counter() - started:.1f}s")
