from django.core.management.base import BaseCommand, CommandError

from apikeys.selectors import project_by_id_or_name
from apikeys.services import project_soft_delete


class Command(BaseCommand):
    help = "Soft-delete a project: its keys then answer 403 project_deleted."

    def add_arguments(self, parser):
        parser.add_argument("project", help="Project id or name.")

    def handle(self, *args, project, **options):
        found = project_by_id_or_name(project)
        if found is None:
            raise CommandError(f"No project with id or name {project!r}.")
        project_soft_delete(project=found)
        self.stdout.write(f"Project {found.name!r} ({found.id}) deleted at {found.deleted_at.isoformat()}.")
