from django.core.management.base import BaseCommand, CommandError

from apikeys.selectors import apikey_by_reference
from apikeys.services import apikey_revoke


class Command(BaseCommand):
    help = "Revoke an API key named by its id, its display prefix (ck_live_ + 8) or the raw key."

    def add_arguments(self, parser):
        parser.add_argument("key")

    def handle(self, *args, key, **options):
        matches = apikey_by_reference(key)
        if not matches:
            raise CommandError("No API key matches that id, prefix or key.")
        if len(matches) > 1:
            raise CommandError(f"{len(matches)} keys share that prefix; revoke by id instead.")
        revoked = apikey_revoke(key=matches[0])
        self.stdout.write(f"Revoked {revoked.prefix}… ({revoked.id}) at {revoked.revoked_at.isoformat()}.")
