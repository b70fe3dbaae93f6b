"""Section 10, shared file storage: with `STORAGE_URL` the PDFs live in an S3-compatible bucket.

The module starts a real S3 protocol server (moto in server mode, its own process on a local port) and
points the default storage at a bucket there, exactly as `STORAGE_URL` does (`storages_from_url`): the
upload lands in the bucket (and nowhere on local disk), the API's download and the share page's file and
download stream it back, and deleting the render deletes the object once the deletion commits.
"""

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from engagement_platform.storage import LOCAL_FILES, storages_from_url
from reliability.servers import free_port_in, port_open, wait_until
from tests.conftest import PDF_BYTES
from tests.sharing import token_of

boto3 = pytest.importorskip("boto3")
MOTO_SERVER = Path(sys.executable).parent / "moto_server"
HTTP_PORTS = (8450, 8499)
REGION = "eu-west-1"

pytestmark = pytest.mark.skipif(not MOTO_SERVER.exists(), reason="moto[server] is not installed")


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory):
    port = free_port_in(*HTTP_PORTS)
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "wb") as output:
        process = subprocess.Popen([str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)], stdout=output,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        if not wait_until(lambda: port_open(port), 20):
            raise RuntimeError(f"moto_server did not start:\n{log.read_text(errors='replace')[-2000:]}")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def bucket(s3_server, settings, monkeypatch):
    """A fresh bucket, and the default storage pointed at it through `STORAGE_URL`'s rule."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "platform-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "platform-test-secret")
    name = f"renders-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=s3_server, region_name=REGION)
    client.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    settings.STORAGES = storages_from_url(
        f"s3://{name}/pdfs?region={REGION}&endpoint_url={s3_server}&addressing_style=path")
    return client, name


def objects(bucket) -> dict[str, bytes]:
    client, name = bucket
    listed = client.list_objects_v2(Bucket=name).get("Contents", [])
    return {item["Key"]: client.get_object(Bucket=name, Key=item["Key"])["Body"].read() for item in listed}


def upload(api, content: bytes = PDF_BYTES) -> dict:
    response = api.post("/v1/renders", {"file": _pdf(content), "name": "Quote"}, format="multipart")
    assert response.status_code == 201, response.content
    return response.json()


def _pdf(content: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile("quote.pdf", content, content_type="application/pdf")


def streamed(response) -> bytes:
    return b"".join(response.streaming_content)


@pytest.mark.django_db
def test_an_upload_is_stored_in_the_bucket_and_not_on_local_disk(api, project, bucket, settings):
    render = upload(api)

    assert objects(bucket) == {f"pdfs/renders/{project.pk}/{render['id']}.pdf": PDF_BYTES}
    assert not any(Path(settings.MEDIA_ROOT).rglob("*"))


@pytest.mark.django_db
def test_the_api_download_streams_the_object_back(api, bucket):
    content = PDF_BYTES + os.urandom(300_000)  # larger than one read
    render = upload(api, content)

    response = api.get(f"/v1/renders/{render['id']}/download")

    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert response["Content-Length"] == str(len(content))
    assert streamed(response) == content


@pytest.mark.django_db
def test_the_share_page_file_and_download_stream_the_object(api, client, bucket):
    render = upload(api)
    share = api.post(f"/v1/renders/{render['id']}/shares", {}, format="json")
    assert share.status_code == 201, share.content
    token = token_of(share.json())

    page = client.get(f"/s/{token}")
    inline = client.get(f"/s/{token}/file")
    attachment = client.get(f"/s/{token}/download")

    assert page.status_code == 200
    assert inline.status_code == 200 and streamed(inline) == PDF_BYTES
    assert attachment.status_code == 200 and streamed(attachment) == PDF_BYTES
    assert attachment["Content-Disposition"].startswith("attachment")


@pytest.mark.django_db
def test_deleting_the_render_deletes_its_object_once_the_deletion_commits(api, bucket,
                                                                          django_capture_on_commit_callbacks):
    kept, deleted = upload(api), upload(api)

    with django_capture_on_commit_callbacks(execute=True):
        assert api.delete(f"/v1/renders/{deleted['id']}").status_code == 204

    assert [key.rsplit("/", 1)[-1] for key in objects(bucket)] == [f"{kept['id']}.pdf"]
    assert api.get(f"/v1/renders/{deleted['id']}/download").status_code == 404


def test_an_empty_storage_url_keeps_files_on_local_disk():
    assert storages_from_url("")["default"] == LOCAL_FILES


def test_the_storage_url_names_the_bucket_prefix_and_connection_options():
    default = storages_from_url("s3://docs/prod/pdfs?region=eu-west-1&endpoint_url=https://s3.example.net")["default"]
    assert default["BACKEND"] == "storages.backends.s3.S3Storage"
    assert default["OPTIONS"] == {"bucket_name": "docs", "location": "prod/pdfs", "region_name": "eu-west-1",
                                  "endpoint_url": "https://s3.example.net", "default_acl": None,
                                  "querystring_auth": True, "file_overwrite": True}


@pytest.mark.parametrize("url, message", [
    ("gs://docs", "scheme"),
    ("s3:///pdfs", "no bucket"),
    ("s3://key:secret@docs", "credentials"),
    ("s3://docs?regoin=eu-west-1", "unknown options: regoin"),
    ("s3://docs?addressing_style=sideways", "addressing_style"),
])
def test_a_bad_storage_url_refuses_to_start(url, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        storages_from_url(url)
