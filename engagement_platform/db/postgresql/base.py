"""Django's PostgreSQL backend, with the per-request health check skipped for connections just used.

Django's `CONN_HEALTH_CHECKS` runs `SELECT 1` before the first query of every request that
reuses a connection: one more round trip on every API call. Here a connection that served a
request without error less than `health_check_idle_seconds` ago (an `OPTIONS` key, set from
`DATABASE_HEALTH_CHECK_IDLE` in settings; 0 checks every request like Django) is taken as
healthy without it. What the check is for still holds: a connection left idle through a
database restart, a failover or a firewall's idle timeout is checked before it is used. One
that breaks while busy fails the request in flight, and Django closes it at the end of that
request because an error occurred, so the next request connects afresh.
"""

import time

from django.db.backends.postgresql import base

DEFAULT_IDLE_SECONDS = 1.0


class DatabaseWrapper(base.DatabaseWrapper):
    def __init__(self, settings_dict, *args, **kwargs):
        options = settings_dict.get("OPTIONS", {})
        self.health_check_idle_seconds = float(options.get("health_check_idle_seconds", DEFAULT_IDLE_SECONDS))
        super().__init__(settings_dict, *args, **kwargs)
        self.healthy_at: float | None = None
        self.used_since_check = False

    def get_connection_params(self):
        params = super().get_connection_params()
        params.pop("health_check_idle_seconds", None)  # ours, not a libpq parameter
        return params

    def connect(self):
        super().connect()
        self.healthy_at = time.monotonic()

    def create_cursor(self, name=None):
        self.used_since_check = True
        return super().create_cursor(name)

    def close_if_unusable_or_obsolete(self):
        """Django calls this as every request starts and ends; a connection that just served one is stamped."""
        errors, used = self.errors_occurred, self.used_since_check
        self.used_since_check = False
        super().close_if_unusable_or_obsolete()
        if self.connection is None:
            self.healthy_at = None
            return
        at = time.monotonic()
        if (errors and self.health_check_done) or (used and not errors):
            self.healthy_at = at  # it just passed Django's check, or just answered without error
        if self.healthy_at is not None and at - self.healthy_at < self.health_check_idle_seconds:
            self.health_check_done = True
