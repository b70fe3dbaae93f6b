"""Encoded report bodies kept in the shared cache, dropped by any write to the project's report data.

A report is a pure function of the project's rollups and raw events, the resolved window, the
bucket size and the filters. Dashboards ask for the same report again and again, so the body is
kept under a key made of exactly those inputs, together with the project's **report version**:
an opaque value in the shared cache that every write to the project's report data replaces after
it commits (`report_data_changed`: ingestion batches that accepted events, rollup rebuilds).

A request reads the version and the body in one round trip (MGET) and answers the body only
when it was stored under the current version. Otherwise it builds the body and stores it under
the version it read *before* building: a write that commits meanwhile replaces the version, so
such a body is never answered after that write's replacement has happened.

Off (`REPORT_CACHE_SECONDS` = 0) unless the cache is shared by every worker (Redis): a
per-process cache cannot see another process's writes. A request with `Cache-Control: no-cache`
is built afresh (and stored). Bodies expire after `REPORT_CACHE_SECONDS`, which also bounds how
long a replacement lost to a cache outage can go unseen. When the cache is unreachable, reports
are built from the database as if nothing were cached.
"""

import hashlib
import logging
import secrets
import uuid
from collections.abc import Callable

from django.conf import settings
from django.core.cache import caches
from django.db import connection, transaction

from engagement_platform.redis_kept import kept_connection

logger = logging.getLogger("engagement_platform.reports")

VERSION_KEY = "reports:version:{project}"
BODY_KEY = "reports:body:{project}:{inputs}"


def report_cache_seconds() -> int:
    return getattr(settings, "REPORT_CACHE_SECONDS", 0)


def _version_key(project_id: uuid.UUID) -> str:
    return VERSION_KEY.format(project=project_id.hex)


def _body_key(project_id: uuid.UUID, inputs: tuple) -> str:
    digest = hashlib.sha256(repr(inputs).encode("utf-8")).hexdigest()
    return BODY_KEY.format(project=project_id.hex, inputs=digest)


def report_inputs(*, window, group_by: str, filters) -> tuple:
    """Everything besides the project's data that the body depends on."""
    channel = filters.channel_id.hex if filters.channel_id else ""
    return (window.start.isoformat(), window.end.isoformat(), str(group_by), channel, filters.domain or "")


def cached_body(*, project_id: uuid.UUID, inputs: tuple, build: Callable[[], bytes], refresh: bool = False) -> bytes:
    """The body for `inputs` from the cache when it is current, else `build()` (then kept for the next request)."""
    seconds = report_cache_seconds()
    if seconds <= 0:
        return build()
    store = _store()
    version_key, body_key = store.key(_version_key(project_id)), store.key(_body_key(project_id, inputs))
    try:
        version, kept = store.read(version_key, None if refresh else body_key)
    except Exception as exc:  # unreachable: build from the database
        logger.warning("report cache unavailable: %s", type(exc).__name__)
        return build()
    if version is None:  # never written, or the cache was flushed: start one (a write may beat us to it)
        version = _new_version()
        if not _quietly(lambda: store.start_version(version_key, version)):
            return build()
    elif kept is not None and kept[0] == version:
        return kept[1]
    body = build()
    _quietly(lambda: store.keep(body_key, version, body, seconds))
    return body


def report_data_changed(*, project_id: uuid.UUID) -> None:
    """Drop the project's kept report bodies once the current transaction commits (at once outside one)."""
    if report_cache_seconds() <= 0:
        return
    if connection.in_atomic_block:
        transaction.on_commit(lambda: _replace_version(project_id))
    else:
        _replace_version(project_id)


def _replace_version(project_id: uuid.UUID) -> None:
    store = _store()
    try:
        store.replace_version(store.key(_version_key(project_id)), _new_version())
    except Exception as exc:  # kept bodies expire after REPORT_CACHE_SECONDS
        logger.warning("report version not replaced, cache unavailable: %s", type(exc).__name__)


def _new_version() -> str:
    return str(secrets.randbits(62))


def _quietly(write: Callable[[], object]) -> object:
    try:
        return write()
    except Exception as exc:  # a body not kept is built again next time
        logger.warning("report cache write failed: %s", type(exc).__name__)
        return None


def _store():
    backend = caches["default"]
    kept = kept_connection(backend)
    return _RedisStore(backend, kept) if kept is not None else _CacheStore(backend)


class _RedisStore:
    """Redis: the version and the body in one MGET on a kept connection.

    A body is kept as its version, a newline, then the body's bytes.
    """

    def __init__(self, backend, kept):
        self.backend, self.kept = backend, kept

    def key(self, name: str) -> str:
        return self.backend.make_key(name)

    def read(self, version_key: str, body_key: str | None) -> tuple[str | None, tuple[str, bytes] | None]:
        if body_key is None:
            return _text(self.kept.execute("GET", version_key)), None
        version, entry = self.kept.execute("MGET", version_key, body_key)
        if entry is None:
            return _text(version), None
        stored_version, _, body = entry.partition(b"\n")
        return _text(version), (stored_version.decode("ascii"), body)

    def start_version(self, version_key: str, version: str) -> bool:
        return self.kept.execute("SET", version_key, version, "NX") is not None

    def keep(self, body_key: str, version: str, body: bytes, seconds: int) -> None:
        self.kept.execute("SET", body_key, version.encode("ascii") + b"\n" + body, "EX", seconds)

    def replace_version(self, version_key: str, version: str) -> None:
        self.kept.execute("SET", version_key, version)


class _CacheStore:
    """Any other cache backend, through Django's cache API (per process: tests and single-process runs)."""

    def __init__(self, backend):
        self.backend = backend

    def key(self, name: str) -> str:
        return name

    def read(self, version_key: str, body_key: str | None) -> tuple[str | None, tuple[str, bytes] | None]:
        found = self.backend.get_many([version_key] if body_key is None else [version_key, body_key])
        return found.get(version_key), found.get(body_key) if body_key else None

    def start_version(self, version_key: str, version: str) -> bool:
        return self.backend.add(version_key, version, timeout=None)

    def keep(self, body_key: str, version: str, body: bytes, seconds: int) -> None:
        self.backend.set(body_key, (version, body), timeout=seconds)

    def replace_version(self, version_key: str, version: str) -> None:
        self.backend.set(version_key, version, timeout=None)


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("ascii")
