"""Floor views: the least a request of each shape can cost on this stack.

Mounted under /bench/ only when the setting BENCH_FLOOR_VIEWS is on (the benchmark's own
server sets it); a normal deployment never routes to them. They go through the same
middleware as the API but skip DRF, keys, rate limits and serializers.
"""

import uuid

from django.db import connection
from django.http import Http404, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from engagement_platform.clock import now
from engagement_platform.ids import new_id
from renders.models import EngagementEvent, Render

CONSTANT_BODY = {"ok": True, "counts": {"viewed": 0, "downloaded": 0, "printed": 0}}


def constant_json(request):
    """A constant JSON body: the cost of Django + gunicorn + the network per request."""
    return JsonResponse(CONSTANT_BODY)


@csrf_exempt
def select_insert(request, render_id):
    """One indexed SELECT (the render by primary key) and one INSERT (an event row), autocommit."""
    try:
        rid = uuid.UUID(render_id)
    except ValueError:
        raise Http404
    events = EngagementEvent._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT project_id FROM {Render._meta.db_table} WHERE id = %s", [rid])
        row = cursor.fetchone()
        if row is None:
            raise Http404
        cursor.execute(
            f"INSERT INTO {events} (id, project_id, render_id, event_type, actor_kind, source_ip, created_at) "
            "VALUES (%s, %s, %s, 'viewed', 'partner', %s, %s)",
            [new_id(), row[0], rid, request.META.get("REMOTE_ADDR"), now()],
        )
    return JsonResponse({"recorded": True})


urlpatterns = [
    path("constant", constant_json, name="bench-constant"),
    path("select-insert/<str:render_id>", select_insert, name="bench-select-insert"),
]
