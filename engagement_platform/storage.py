"""Where stored files live (PDFs, and page images: everything written through Django's storage API).

`STORAGE_URL` names it, read once by the settings (`storages_from_url`):

- unset or empty: files under `MEDIA_ROOT` on local disk (one machine);
- `s3://BUCKET[/PREFIX]?region=REGION&endpoint_url=URL&addressing_style=path|virtual`: an S3-compatible
  bucket through django-storages and boto3 (AWS S3, MinIO, Ceph, R2, ...), objects under PREFIX.
  `endpoint_url` is for a service other than AWS; `region` its region. Credentials are never in the URL:
  boto3 finds them as it always does (`AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` in the environment,
  a shared credentials file, or the instance's role).

Files are streamed to clients through the platform (the download routes, the share page's file), never
through a bucket URL, so the bucket stays private and a revoked share stops serving at once.
"""

from urllib.parse import parse_qs, urlsplit

from django.core.exceptions import ImproperlyConfigured

LOCAL_FILES = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
STATIC_FILES = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}
S3_BACKEND = "storages.backends.s3.S3Storage"
S3_QUERY_OPTIONS = {"region": "region_name", "endpoint_url": "endpoint_url", "addressing_style": "addressing_style"}
ADDRESSING_STYLES = ("path", "virtual", "auto")


def storages_from_url(url: str) -> dict:
    """Django's `STORAGES` for `STORAGE_URL`: the default storage it names, static files as Django keeps them."""
    return {"default": default_storage_from_url(url), "staticfiles": STATIC_FILES}


def default_storage_from_url(url: str) -> dict:
    if not url or not url.strip():
        return LOCAL_FILES
    parts = urlsplit(url.strip())
    if parts.scheme != "s3":
        raise ImproperlyConfigured(
            f"STORAGE_URL must be empty or s3://bucket[/prefix]?...; got scheme {parts.scheme!r}.")
    if not parts.hostname:
        raise ImproperlyConfigured("STORAGE_URL names no bucket (s3://BUCKET[/PREFIX]).")
    if parts.username or parts.password:
        raise ImproperlyConfigured("STORAGE_URL must not carry credentials: boto3 reads them from the environment.")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - set(S3_QUERY_OPTIONS))
    if unknown:
        raise ImproperlyConfigured(f"STORAGE_URL has unknown options: {', '.join(unknown)} "
                                   f"(known: {', '.join(S3_QUERY_OPTIONS)}).")
    options = {
        "bucket_name": parts.hostname,
        "location": parts.path.strip("/"),
        "default_acl": None,  # the bucket's own policy: private
        "querystring_auth": True,  # a URL of an object, if ever made, is signed and expires
        "file_overwrite": True,  # names are render ids: no existence check (one round trip) before a write
    }
    for name, values in query.items():
        options[S3_QUERY_OPTIONS[name]] = values[-1]
    if options.get("addressing_style") not in (None, *ADDRESSING_STYLES):
        raise ImproperlyConfigured(f"STORAGE_URL addressing_style must be one of {', '.join(ADDRESSING_STYLES)}.")
    return {"BACKEND": S3_BACKEND, "OPTIONS": options}
