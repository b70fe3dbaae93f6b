"""Encoded response bodies kept in the shared cache, dropped by every write to the data they were built from.

`KeptBodies` is one kind of kept body: its *scope* name (`"reports"`: one project's report data,
`"summary"`: one render's engagement) and the setting naming its lifetime in seconds. A kept body
belongs to one scope (the name and the id of what it depends on: a project, a render) and is kept
under a key made of the scope and the body's other *inputs* (the query, the asking project), together
with the scope's **version**: an opaque value in the shared cache that every write to the scope's data
replaces after it commits (`KeptBodies.changed`, called by the services that write).

A request reads the version and the body in one round trip (MGET) and answers the body only when it
was stored under the current version. Otherwise it builds the body and stores it under the version it
read *before* building: a write that commits meanwhile replaces the version, so such a body is never
answered after that write's replacement has happened. A scope without a version yet (never written,
expired, evicted or flushed) gets one after building, only if no write set one meanwhile (SET NX); a
body built as nothing (`None`: the thing asked for is not there) is not kept.

Versions expire after a day (or the bodies' lifetime when longer): losing a version only makes the
next request build afresh, since a new version never equals an old one. Bodies expire after the
lifetime, which also bounds how long a replacement lost to a cache outage can go unseen. Off (a
lifetime <= 0) the body is always built; the settings turn it off unless the cache is shared by every
worker (Redis), as a per-process cache cannot see another process's writes. When the cache is
unreachable, bodies are built from the database as if nothing were kept.
"""

import hashlib
import logging
import secrets
import uuid
from collections.abc import Callable, Collection

from django.conf import settings
from django.core.cache import caches
from django.db import connection, transaction

from engagement_platform.redis_kept import kept_connection

logger = logging.getLogger("engagement_platform.bodycache")

VERSION_KEY = "{scope}:version"
BODY_KEY = "{scope}:body:{inputs}"
VERSION_SECONDS = 24 * 60 * 60


def asks_for_fresh(request) -> bool:
    """`Cache-Control: no-cache` on the request: build the body afresh rather than answer a kept one."""
    directives = {part.strip().lower() for part in request.headers.get("Cache-Control", "").split(",")}
    return "no-cache" in directives


def _version_key(scope: str) -> str:
    return VERSION_KEY.format(scope=scope)


def _body_key(scope: str, inputs: tuple) -> str:
    digest = hashlib.sha256(repr(inputs).encode("utf-8")).hexdigest()
    return BODY_KEY.format(scope=scope, inputs=digest)


def _version_seconds(seconds: int) -> int:
    return max(VERSION_SECONDS, seconds)


class KeptBodies:
    """The kept bodies of one scope name, each dropped by the writes to the data of its id.

    `seconds_setting` names the setting holding their lifetime in seconds (read at each call, so a
    changed setting applies at once; absent means off).
    """

    def __init__(self, *, scope: str, seconds_setting: str):
        self.scope_name, self.seconds_setting = scope, seconds_setting

    def seconds(self) -> int:
        return getattr(settings, self.seconds_setting, 0)

    def scope(self, owner_id: uuid.UUID) -> str:
        return f"{self.scope_name}:{owner_id.hex}"

    def cached(self, owner_id: uuid.UUID, *, inputs: tuple, build: Callable[[], bytes | None],
               refresh: bool = False) -> bytes | None:
        """The body of `owner_id`'s scope for `inputs` from the cache when it is current, else `build()`
        (then kept for the next request unless it is None). `refresh` builds afresh (and keeps the result)."""
        seconds = self.seconds()
        if seconds <= 0:
            return build()
        scope = self.scope(owner_id)
        store = _store()
        version_key, body_key = store.key(_version_key(scope)), store.key(_body_key(scope, inputs))
        try:
            version, kept = store.read(version_key, None if refresh else body_key)
        except Exception as exc:  # unreachable: build from the database
            logger.warning("body cache unavailable: %s", type(exc).__name__)
            return build()
        if kept is not None and version is not None and kept[0] == version:
            return kept[1]
        body = build()
        if body is None:
            return None
        if version is None:  # start one, unless a write did while the body was built
            version = _new_version()
            if not _quietly(lambda: store.start_version(version_key, version, _version_seconds(seconds))):
                return body
        _quietly(lambda: store.keep(body_key, version, body, seconds))
        return body

    def changed(self, *owner_ids: uuid.UUID) -> None:
        """Drop the kept bodies of these ids' scopes once the current transaction commits (at once outside one)."""
        seconds = self.seconds()
        if seconds <= 0 or not owner_ids:
            return
        scopes = [self.scope(owner_id) for owner_id in owner_ids]
        if connection.in_atomic_block:
            transaction.on_commit(lambda: _replace_versions(scopes, seconds))
        else:
            _replace_versions(scopes, seconds)


def _replace_versions(scopes: Collection[str], seconds: int) -> None:
    store = _store()
    try:
        store.replace_versions([store.key(_version_key(scope)) for scope in scopes], _new_version(),
                               _version_seconds(seconds))
    except Exception as exc:  # kept bodies expire after `seconds`
        logger.warning("body versions not replaced, cache unavailable: %s", type(exc).__name__)


def _new_version() -> str:
    return str(secrets.randbits(62))


def _quietly(write: Callable[[], object]) -> object:
    try:
        return write()
    except Exception as exc:  # a body not kept is built again next time
        logger.warning("body cache write failed: %s", type(exc).__name__)
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

    def start_version(self, version_key: str, version: str, seconds: int) -> bool:
        return self.kept.execute("SET", version_key, version, "EX", seconds, "NX") is not None

    def keep(self, body_key: str, version: str, body: bytes, seconds: int) -> None:
        self.kept.execute("SET", body_key, version.encode("ascii") + b"\n" + body, "EX", seconds)

    def replace_versions(self, version_keys: list[str], version: str, seconds: int) -> None:
        if len(version_keys) == 1:
            self.kept.execute("SET", version_keys[0], version, "EX", seconds)
        else:  # one round trip for a batch's scopes
            self.kept.execute_many(*(("SET", key, version, "EX", seconds) for key in version_keys))


class _CacheStore:
    """Any other cache backend, through Django's cache API (per process: tests and single-process runs)."""

    def __init__(self, backend):
        self.backend = backend

    def key(self, name: str) -> str:
        return name

    def read(self, version_key: str, body_key: str | None) -> tuple[str | None, tuple[str, bytes] | None]:
        found = self.backend.get_many([version_key] if body_key is None else [version_key, body_key])
        return found.get(version_key), found.get(body_key) if body_key else None

    def start_version(self, version_key: str, version: str, seconds: int) -> bool:
        return self.backend.add(version_key, version, timeout=seconds)

    def keep(self, body_key: str, version: str, body: bytes, seconds: int) -> None:
        self.backend.set(body_key, (version, body), timeout=seconds)

    def replace_versions(self, version_keys: list[str], version: str, seconds: int) -> None:
        self.backend.set_many(dict.fromkeys(version_keys, version), timeout=seconds)


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("ascii")
