from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from apikeys.selectors import project_by_id_or_name
from apikeys.services import apikey_issue


class Command(BaseCommand):
    help = "Create an API key for a project. Prints the raw key (shown only once) as the last line."

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="Project id or name.")
        parser.add_argument("--scopes", help="Comma-separated scopes; all five when omitted.")
        parser.add_argument("--name", default="", help="A label for the key.")
        parser.add_argument("--expires-in-days", type=int)

    def handle(self, *args, project, scopes, name, expires_in_days, **options):
        found = project_by_id_or_name(project)
        if found is None:
            raise CommandError(f"No project with id or name {project!r}.")
        if found.is_deleted:
            raise CommandError(f"Project {found.name!r} is deleted.")
        if expires_in_days is not None and expires_in_days < 1:
            raise CommandError("--expires-in-days must be positive.")
        scope_list = [s.strip() for s in scopes.split(",") if s.strip()] if scopes is not None else None
        try:
            issued = apikey_issue(project=found, name=name, scopes=scope_list, expires_in_days=expires_in_days)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        if options["verbosity"] >= 1:
            self.stdout.write(f"Key {issued.key.id} for project {found.name!r}, "
                              f"scopes {','.join(issued.key.scopes)}.")
            self.stdout.write(f"Prefix: {issued.key.prefix}")
            self.stdout.write("Store this key now; it cannot be shown again:")
        self.stdout.write(issued.raw_key)
