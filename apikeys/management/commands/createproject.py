from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from apikeys.services import project_create


class Command(BaseCommand):
    help = "Create a project (tenant). Prints the project id as the last line."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--retention-days", type=int, default=90)
        parser.add_argument("--rate-limit", type=int, default=600, help="Requests per minute.")

    def handle(self, *args, name, retention_days, rate_limit, **options):
        if retention_days < 1 or rate_limit < 1:
            raise CommandError("--retention-days and --rate-limit must be positive.")
        try:
            project = project_create(name=name, retention_days=retention_days, rate_limit_per_minute=rate_limit)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        if options["verbosity"] >= 1:
            self.stdout.write(f"Created project {project.name!r} "
                              f"(retention {retention_days} days, {rate_limit} requests/minute).")
        self.stdout.write(str(project.id))
