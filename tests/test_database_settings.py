"""Connection settings the platform's statements rely on."""

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db


@pytest.mark.skipif(connection.vendor != "postgresql", reason="JIT compilation is a PostgreSQL planner feature")
def test_postgresql_connections_compile_no_statement_just_in_time():
    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        assert cursor.fetchone()[0] == "off"
