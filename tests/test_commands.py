"""Contract section 5: the project and key management commands."""

import re
import uuid
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from apikeys.models import ALL_SCOPES, ApiKey, Project
from tests.conftest import assert_envelope


def run(*argv) -> list[str]:
    out = StringIO()
    call_command(*argv, stdout=out)
    return out.getvalue().splitlines()


def create_key(*argv) -> tuple[str, list[str]]:
    lines = run("createapikey", *argv)
    return lines[-1], lines


# createproject ---------------------------------------------------------------------------


def test_createproject_prints_the_project_id_as_the_last_line(db):
    project_id = run("createproject", "Acme Corp")[-1]
    assert uuid.UUID(project_id).version == 7
    project = Project.objects.get(pk=project_id)
    assert (project.name, project.retention_days, project.rate_limit_per_minute) == ("Acme Corp", 90, 600)
    assert project.deleted_at is None


def test_createproject_applies_retention_days_and_rate_limit(db):
    project_id = run("createproject", "Small plan", "--retention-days", "30", "--rate-limit", "5")[-1]
    project = Project.objects.get(pk=project_id)
    assert (project.retention_days, project.rate_limit_per_minute) == (30, 5)


def test_createproject_refuses_a_duplicate_name(db):
    run("createproject", "Acme")
    with pytest.raises(CommandError, match="Name already exists"):
        run("createproject", "Acme")
    assert Project.objects.count() == 1


@pytest.mark.parametrize("flag", ["--retention-days", "--rate-limit"])
def test_createproject_refuses_a_plan_value_below_one(db, flag):
    with pytest.raises(CommandError, match="must be positive"):
        run("createproject", "Acme", flag, "0")
    assert Project.objects.count() == 0


# createapikey ----------------------------------------------------------------------------


def test_createapikey_prints_a_working_raw_key_last_and_its_prefix_before(project, make_client):
    raw_key, lines = create_key("--project", str(project.id), "--name", "ci")
    assert re.fullmatch(r"ck_live_[A-Za-z0-9_-]{32,}", raw_key)
    assert any(raw_key[:16] in line for line in lines[:-1])
    assert not any(raw_key in line for line in lines[:-1])
    key = ApiKey.objects.get()
    assert (key.project_id, key.name, key.prefix, key.scopes) == (project.id, "ci", raw_key[:16], ALL_SCOPES)
    assert make_client(raw_key).get("/v1/renders").status_code == 200


def test_createapikey_finds_the_project_by_name(project, make_client):
    raw_key, _ = create_key("--project", "acme")
    assert ApiKey.objects.get().project_id == project.id
    assert make_client(raw_key).get("/v1/renders").status_code == 200


def test_createapikey_grants_exactly_the_scopes_listed(project, render, make_client):
    raw_key, _ = create_key("--project", "acme", "--scopes", "renders.read, reports.view")
    assert ApiKey.objects.get().scopes == ["renders.read", "reports.view"]
    client = make_client(raw_key)
    assert client.get("/v1/renders").status_code == 200
    response = client.post(f"/v1/renders/{render.id}/events", {"eventType": "viewed"}, format="json")
    assert_envelope(response, 403, "forbidden", "This key lacks the scope 'renders.write' that this route requires.")


def test_createapikey_refuses_an_unknown_scope(project):
    with pytest.raises(CommandError, match="Unknown scopes: renders.admin"):
        create_key("--project", "acme", "--scopes", "renders.read,renders.admin")
    assert ApiKey.objects.count() == 0


def test_createapikey_sets_the_expiry_in_days(project, make_client, clock):
    raw_key, _ = create_key("--project", "acme", "--expires-in-days", "7")
    assert ApiKey.objects.get().expires_at == timezone.now() + timedelta(days=7)
    client = make_client(raw_key)
    clock.shift(timedelta(days=7) - timedelta(seconds=1))
    assert client.get("/v1/renders").status_code == 200
    clock.shift(timedelta(seconds=1))
    assert client.get("/v1/renders").status_code == 401


def test_createapikey_refuses_a_non_positive_expiry(project):
    with pytest.raises(CommandError, match="must be positive"):
        create_key("--project", "acme", "--expires-in-days", "0")


@pytest.mark.parametrize("reference", ["no-such-project", str(uuid.uuid4())])
def test_createapikey_refuses_an_unknown_project(db, reference):
    with pytest.raises(CommandError, match="No project"):
        create_key("--project", reference)


def test_createapikey_refuses_a_deleted_project(project):
    run("deleteproject", "acme")
    with pytest.raises(CommandError, match="deleted"):
        create_key("--project", "acme")


def test_createapikey_prints_only_the_key_when_quiet(project):
    lines = run("createapikey", "--project", "acme", "--verbosity", "0")
    assert len(lines) == 1 and lines[0].startswith("ck_live_")


# revokeapikey ----------------------------------------------------------------------------


@pytest.mark.parametrize("reference", ["id", "prefix", "raw key"])
def test_revokeapikey_by_id_prefix_or_raw_key_makes_the_key_unauthorized(project, make_key, make_client, reference):
    issued = make_key(project)
    bystander = make_client(make_key(project).raw_key)
    client = make_client(issued.raw_key)
    assert client.get("/v1/renders").status_code == 200
    argument = {"id": str(issued.key.id), "prefix": issued.raw_key[:16], "raw key": issued.raw_key}[reference]
    lines = run("revokeapikey", argument)
    assert issued.raw_key not in "\n".join(lines)
    assert ApiKey.objects.get(pk=issued.key.pk).revoked_at is not None
    assert_envelope(client.get("/v1/renders"), 401, "unauthorized")
    assert bystander.get("/v1/renders").status_code == 200


@pytest.mark.parametrize("reference", ["ck_live_nothere", "ck_live_" + "x" * 43, str(uuid.uuid4()), "garbage"])
def test_revokeapikey_refuses_a_reference_that_matches_no_key(project, make_key, reference):
    make_key(project)
    with pytest.raises(CommandError, match="No API key matches"):
        run("revokeapikey", reference)
    assert not ApiKey.objects.filter(revoked_at__isnull=False).exists()


def test_revokeapikey_refuses_a_prefix_shared_by_two_keys(project, make_key):
    first, second = make_key(project), make_key(project)
    ApiKey.objects.filter(pk=second.key.pk).update(prefix=first.key.prefix)
    with pytest.raises(CommandError, match="2 keys share that prefix"):
        run("revokeapikey", first.key.prefix)
    assert not ApiKey.objects.filter(revoked_at__isnull=False).exists()


# deleteproject ---------------------------------------------------------------------------


@pytest.mark.parametrize("by", ["name", "id"])
def test_deleteproject_soft_deletes_so_its_keys_answer_forbidden(project, make_key, make_client, by):
    client = make_client(make_key(project).raw_key)
    run("deleteproject", project.name if by == "name" else str(project.id))
    project.refresh_from_db()
    assert project.deleted_at is not None
    assert Project.objects.filter(pk=project.pk).exists()
    assert_envelope(client.get("/v1/renders"), 403, "forbidden", "This key's project has been deleted.")


def test_deleteproject_refuses_an_unknown_project(db):
    with pytest.raises(CommandError, match="No project"):
        run("deleteproject", "nobody")
