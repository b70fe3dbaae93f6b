"""Verified keys kept in each worker process, correct across processes through a shared epoch.

Looking the key and its project up in the database on every request cost a third of a keyed
request. Each worker process keeps the keys it has verified (by key hash) with their project,
and the shared cache holds the **keys epoch**: an opaque value replaced by every change that
can alter an authentication outcome (revocation, expiry, a project's soft delete, scopes or
plan), after the change commits (`keys_changed`).

An entry remembers the epoch read *before* its database read. Each request's one round trip
to the shared cache (the rate-limit count, `count_request`) also compares the epoch: when it
is unchanged the entry is still the database's truth and the request is counted; when it
moved the request is not counted, the key is read again from the database and the request
answered from that. So a change made in any process is seen by every worker on its next
request. Answers that refuse a request (401, 403) are never taken from this cache: they are
always confirmed by a database read.

When the shared cache is unreachable nothing here can be trusted: authentication reads the
database on every request (`apikeys.throttling`) and the rate limit fails open or closed as
configured. Entries also expire after `LOCAL_TTL_SECONDS`, which bounds how long a change
made outside the platform's code (SQL by hand) or lost during a cache outage goes unseen.
"""

import hashlib
import logging
import secrets
import threading
import time
from dataclasses import dataclass

from django.core.cache import cache, caches
from django.db import connection, transaction

from apikeys.models import ApiKey
from apikeys.selectors import apikey_with_project_by_hash
from engagement_platform.redis_kept import kept_connection

logger = logging.getLogger("engagement_platform.apikeys")

EPOCH_KEY = "apikeys:epoch"
LOCAL_TTL_SECONDS = 30
LOCAL_MAX_ENTRIES = 10_000

# One atomic step in Redis: read the epoch (creating it when missing, e.g. after a flush), and
# count the request in its rate-limit window unless the caller's epoch is stale.
# KEYS: epoch, window counter. ARGV: expected epoch ('' = count whatever it is), window TTL,
# a fresh epoch to create when there is none. Returns {epoch, count or -1 when not counted}.
COUNT_SCRIPT = """
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  redis.call('SET', KEYS[1], ARGV[3])
  epoch = ARGV[3]
end
if ARGV[1] ~= '' and epoch ~= ARGV[1] then
  return {epoch, -1}
end
local count = redis.call('INCR', KEYS[2])
if count == 1 then
  redis.call('EXPIRE', KEYS[2], ARGV[2])
end
return {epoch, count}
"""


COUNT_SCRIPT_SHA = hashlib.sha1(COUNT_SCRIPT.encode()).hexdigest()


def new_epoch() -> int:
    return secrets.randbits(62)


@dataclass(frozen=True)
class VerifiedKey:
    digest: str
    key: ApiKey  # with `key.project` loaded
    epoch: int | None  # the shared epoch read before the database read; None: the cache was unreachable
    fresh: bool  # read from the database during this request
    loaded_at: float

    def refuses(self, at) -> bool:
        """Whether this entry would refuse the request (such answers are confirmed in the database)."""
        return not self.key.is_usable(at) or self.key.project.is_deleted


class LocalKeys:
    """The worker's verified keys by hash, shared by its threads: reads need no lock, changes take it."""

    def __init__(self):
        self._entries: dict[str, VerifiedKey] = {}
        self._lock = threading.Lock()

    def get(self, digest: str) -> VerifiedKey | None:
        entry = self._entries.get(digest)
        if entry is None or time.monotonic() - entry.loaded_at > LOCAL_TTL_SECONDS:
            return None
        return entry

    def load(self, digest: str, *, epoch=None, read_epoch: bool = True) -> VerifiedKey | None:
        """Read the key from the database, tagged with the epoch read before it (pass `epoch` when known)."""
        if epoch is None and read_epoch:
            try:
                epoch = current_epoch()
            except Exception as exc:  # the shared cache is unreachable: answer from the database, keep nothing
                logger.warning("keys epoch unavailable: %s", type(exc).__name__)
                self.clear()
        key = apikey_with_project_by_hash(digest)
        if key is None:
            with self._lock:
                self._entries.pop(digest, None)
            return None
        entry = VerifiedKey(digest=digest, key=key, epoch=epoch, fresh=True, loaded_at=time.monotonic())
        with self._lock:  # every change under the lock: eviction iterates the dict
            if epoch is None:
                self._entries.pop(digest, None)
            else:
                if len(self._entries) >= LOCAL_MAX_ENTRIES:
                    self._entries.pop(next(iter(self._entries)), None)
                self._entries[digest] = VerifiedKey(digest=digest, key=key, epoch=epoch, fresh=False,
                                                    loaded_at=entry.loaded_at)
        return entry

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


local_keys = LocalKeys()


# The shared epoch --------------------------------------------------------------------------

def current_epoch() -> int:
    epoch = cache.get(EPOCH_KEY)
    if epoch is None:
        cache.add(EPOCH_KEY, new_epoch(), timeout=None)
        epoch = cache.get(EPOCH_KEY)
    return int(epoch)


def count_request(*, counter_key: str, ttl: int, expected_epoch: int | None) -> tuple[int, int | None]:
    """One round trip: (current epoch, the window's count, or None when `expected_epoch` is stale).

    Counts only when the epoch still is `expected_epoch` (or whatever it is when that is None).
    Raises when the shared cache is unreachable.
    """
    backend = caches["default"]
    kept = kept_connection(backend)
    if kept is not None:
        keys = [backend.make_key(EPOCH_KEY), backend.make_key(counter_key)]
        args = ["" if expected_epoch is None else str(expected_epoch), ttl, new_epoch()]
        epoch, count = kept.execute("EVALSHA", COUNT_SCRIPT_SHA, len(keys), *keys, *args,
                                    script=("EVAL", COUNT_SCRIPT, len(keys), *keys, *args))
        return int(epoch), (None if count < 0 else count)
    # Any other backend (the per-process cache of tests and local runs): the same steps, not atomic
    # across processes, which such a cache is not shared by anyway.
    epoch = current_epoch()
    if expected_epoch is not None and epoch != expected_epoch:
        return epoch, None
    cache.add(counter_key, 0, timeout=ttl)
    try:
        count = cache.incr(counter_key)
    except ValueError:  # evicted between add and incr
        cache.add(counter_key, 1, timeout=ttl)
        count = 1
    return epoch, count


def keys_changed() -> None:
    """Make every worker re-read its keys from the database on its next request.

    Called by every write that can change an authentication outcome. The epoch is replaced now
    and again once the transaction commits: a worker that re-read the database between the two
    saw the old rows, and the second replacement makes it read again.
    """
    local_keys.clear()
    _publish_epoch()
    if connection.in_atomic_block:
        transaction.on_commit(_publish_epoch)


def _publish_epoch() -> None:
    local_keys.clear()
    try:
        cache.set(EPOCH_KEY, new_epoch(), timeout=None)
    except Exception as exc:  # unreachable: entries elsewhere expire after LOCAL_TTL_SECONDS
        logger.warning("keys epoch not published, cache unavailable: %s", type(exc).__name__)
