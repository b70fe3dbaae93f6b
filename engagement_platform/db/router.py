"""The platform's database router: writes and migrations on the primary, always.

Reads are not routed here: the few reads that may use the replica choose it where they run
(`replica_read` in engagement_platform/db/replica.py); every other read uses the primary (Django's
default, or the database the instance was read from). A row read from the replica and then saved is
written to the primary.
"""

from django.db import DEFAULT_DB_ALIAS


class PrimaryRouter:
    def db_for_read(self, model, **hints):
        return None  # Django's default: the instance's database, else the primary

    def db_for_write(self, model, **hints):
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1, obj2, **hints):
        return True  # the replica holds the primary's rows

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        return db == DEFAULT_DB_ALIAS
