"""Fill a database with a demo project: keys, renders with engagement, and weeks of message traffic."""

from pathlib import Path

from django.core.management.base import BaseCommand
from django.db import transaction

from apikeys.models import Project
from apikeys.services import project_create
from demo import data
from demo.keys import DEMO_KEYS_KEPT_PER_LABEL, default_keys_file, demo_keys_ensure


class Command(BaseCommand):
    help = ("Create (or refresh) the demo project with renders, shares, recipient activity and six weeks of "
            "message traffic; print its keys and ready-to-paste curl lines. Safe to run again: the keys a "
            "previous run printed keep working and are printed again.")

    def add_arguments(self, parser):
        parser.add_argument("--project", default=data.DEMO_PROJECT_NAME, help="Demo project name.")
        parser.add_argument("--base-url", default="http://127.0.0.1:8000", help="Server URL for the curl lines.")
        parser.add_argument("--keys-file", type=Path, default=None,
                            help="Local file (0600) keeping the raw demo keys between runs "
                                 "(default: var/demo-keys.json).")
        parser.add_argument("--no-keys-file", action="store_true",
                            help="Keep no raw key on disk: issue new demo keys (older ones keep working, up to "
                                 f"{DEMO_KEYS_KEPT_PER_LABEL} per kind).")

    def handle(self, *args, project, base_url, keys_file, no_keys_file, **options):
        base_url = base_url.rstrip("/")
        with transaction.atomic():
            demo = Project.objects.filter(name=project).first() or project_create(name=project)
            renders = data.ensure_renders(project=demo)
        activity = data.ensure_activity(project=demo, renders=renders)
        shares = data.ensure_shares(project=demo, renders=renders)
        visits = data.ensure_visits(shares=shares)
        email = data.ensure_email(project=demo, renders=renders, base_url=base_url)
        traffic = data.ensure_message_traffic(project=demo)
        redated = data.ensure_consistent_timeline(project=demo)
        keys = demo_keys_ensure(project=demo, scopes_by_label=data.DEMO_KEY_SCOPES,
                                keys_file=None if no_keys_file else keys_file or default_keys_file())
        contents = [activity, f"{len(shares)} shares with recipient activity", visits, email, traffic]
        if redated:
            contents.append(f"{redated} renders dated back to their first event")
        self.print_summary(demo, renders, [*contents, self.keys_line(keys)], shares, keys.raw_keys, base_url)

    @staticmethod
    def keys_line(keys) -> str:
        if not keys.issued:
            state = "keys of an earlier run, still working"
        elif len(keys.issued) == len(keys.raw_keys):
            state = "new keys"
        else:
            state = f"new keys for {', '.join(keys.issued)}, the others of an earlier run"
        where = f"kept in {keys.kept_in} (0600)" if keys.kept_in else "not kept on disk: the next run issues others"
        revoked = f"; {keys.revoked} older demo keys revoked" if keys.revoked else ""
        return f"{state}, {where}{revoked}"

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
        write(f"  API docs: {base_url}/docs   admin: {base_url}/admin/ "
              "(DEBUG=1 .venv/bin/python manage.py createsuperuser)")
        write(keys["all"])

