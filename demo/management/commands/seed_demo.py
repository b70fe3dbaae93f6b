"""Fill a database with a demo project: keys, renders with engagement, and weeks of message traffic."""

from django.core.management.base import BaseCommand
from django.db import transaction

from apikeys.models import ApiKey, Project
from apikeys.services import apikey_issue, apikey_revoke, project_create
from demo import data


class Command(BaseCommand):
    help = ("Create (or refresh) the demo project with renders, shares, recipient activity and six weeks of "
            "message traffic; print a fresh key and ready-to-paste curl lines. Safe to run again.")

    def add_arguments(self, parser):
        parser.add_argument("--project", default=data.DEMO_PROJECT_NAME, help="Demo project name.")
        parser.add_argument("--base-url", default="http://127.0.0.1:8000", help="Server URL for the curl lines.")

    def handle(self, *args, project, base_url, **options):
        base_url = base_url.rstrip("/")
        with transaction.atomic():
            demo = Project.objects.filter(name=project).first() or project_create(name=project)
            renders = data.ensure_renders(project=demo)
        activity = data.ensure_activity(project=demo, renders=renders)
        shares = data.ensure_shares(project=demo, renders=renders)
        email = data.ensure_email(project=demo, renders=renders, base_url=base_url)
        traffic = data.ensure_message_traffic(project=demo)
        keys = self.rotate_keys(demo)
        self.print_summary(demo, renders, [activity, f"{len(shares)} shares with recipient activity", email,
                                           traffic], shares, keys, base_url)

    def rotate_keys(self, project):
        """Raw keys are never stored, so each run revokes the previous demo keys and prints new ones."""
        for key in ApiKey.objects.filter(project=project, name__startswith="demo:", revoked_at__isnull=True):
            apikey_revoke(key=key)
        return {
            label: apikey_issue(project=project, name=f"demo: {label}", scopes=scopes).raw_key
            for label, scopes in data.DEMO_KEY_SCOPES.items()
        }

    def print_summary(self, project, renders, contents, shares, keys, base_url):
        write = self.stdout.write
        first = renders[0]
        write(f"Demo project {project.name!r} ({project.id}): {len(renders)} renders.")
        for line in contents:
            write(f"  {line}")
        open_share = next(share for share in shares if share.revoked_at is None)
        write(f"  share page: {data.share_link(open_share, base_url)}")
        for label, raw_key in keys.items():
            if label != "all":
                write(f"  key with {', '.join(data.DEMO_KEY_SCOPES[label])}: {raw_key}")
        write("")
        write("Try the APIs (full-scope key):")
        write(f'  export KEY={keys["all"]}')
        write(f'  curl -H "Authorization: Bearer $KEY" {base_url}/v1/renders/{first.id}/engagement')
        write(f'  curl -H "Authorization: Bearer $KEY" "{base_url}/v1/reports/engagement?group_by=week"')
        write(f"  API docs: {base_url}/docs   admin: {base_url}/admin/ (python manage.py createsuperuser)")
        write(keys["all"])

