"""Verified keys kept in each worker process, only where a shared keys epoch makes that safe.

Looking the key and its project up in the database on every request cost a third of a keyed
request. With a shared cache (Redis) each worker process keeps the keys it has verified (by key
hash) with their project, and the shared cache holds the **keys epoch**: an opaque value replaced
by every change that can alter an authentication outcome (revocation, expiry, a project's soft
delete, scopes or plan), by the service that writes it, after the change commits (`keys_changed`).
Other credentials kept the same way (the public links of shares) replace it on their own changes
too, through the same call; it knows nothing of them.

An entry remembers the epoch read *before* its database read. Each request's one round trip to
Redis (the rate-limit count, `count_request`) also compares the epoch: when it is unchanged the
entry is still the database's truth and the request is counted; when it moved the request is not
counted and the key is read again from the database (`apikeys.resolution`). So a change made in
any process is seen by every worker on its next request. Answers that refuse a request (401,
403) are never taken from this cache: they are always confirmed by a database read.

Without a shared epoch (the per-process cache of local runs and tests, or any non-Redis backend)
nothing about a key is kept in a process: every request reads the key from the database. When
Redis is unreachable nothing here can be trusted either: the database answers every request and
nothing is kept until the epoch can be read again. Entries also expire after `LOCAL_TTL_SECONDS`,
which bounds how long a change made outside the platform's services (SQL by hand) goes unseen.
"""

import hashlib
import logging
import secrets

from django.core.cache import caches
from django.db import connection, transaction

from apikeys.models import ApiKey
from engagement_platform.kept import KeptByEpoch
from engagement_platform.ratelimit import COUNTER_TTL_SECONDS
from engagement_platform.redis_kept import kept_connection

logger = logging.getLogger("engagement_platform.apikeys")

EPOCH_KEY = "apikeys:epoch"
LOCAL_TTL_SECONDS = 30
LOCAL_MAX_ENTRIES = 10_000

# One atomic step in Redis: read the epoch (creating it when missing, e.g. after a flush), and
# count the request in its rate-limit window unless the caller's epoch is stale.
# KEYS: epoch, window counter. ARGV: expected epoch, window TTL, a fresh epoch to create when
# there is none. Returns {epoch, count or -1 when not counted}.
COUNT_SCRIPT = """
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  redis.call('SET', KEYS[1], ARGV[3])
  epoch = ARGV[3]
end
if epoch ~= ARGV[1] then
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


# The worker's verified keys by hash, each with its project loaded (`Kept.value`: an `ApiKey`).
local_keys: KeptByEpoch[ApiKey] = KeptByEpoch(ttl_seconds=LOCAL_TTL_SECONDS, max_entries=LOCAL_MAX_ENTRIES)


# The shared epoch --------------------------------------------------------------------------

def shared_epoch_available() -> bool:
    """Whether the cache is one every server process shares (Redis): only then are keys kept."""
    return kept_connection(caches["default"]) is not None


def current_epoch() -> int:
    """The shared epoch, created when missing. Raises when the shared cache is unreachable."""
    cache = caches["default"]
    epoch = cache.get(EPOCH_KEY)
    if epoch is None:
        cache.add(EPOCH_KEY, new_epoch(), timeout=None)
        epoch = cache.get(EPOCH_KEY)
    return int(epoch)


def count_request(*, counter_key: str, expected_epoch: int) -> tuple[int, int | None]:
    """One round trip to Redis: (current epoch, the window's count, or None when `expected_epoch` is stale).

    `counter_key` is the window's counter (`engagement_platform.ratelimit.counter_key`). Counts only
    when the epoch still is `expected_epoch`. Only for a shared cache (`shared_epoch_available`);
    raises when it is unreachable.
    """
    backend = caches["default"]
    kept = kept_connection(backend)
    keys = [backend.make_key(EPOCH_KEY), backend.make_key(counter_key)]
    args = [str(expected_epoch), COUNTER_TTL_SECONDS, new_epoch()]
    epoch, count = kept.execute("EVALSHA", COUNT_SCRIPT_SHA, len(keys), *keys, *args,
                                script=("EVAL", COUNT_SCRIPT, len(keys), *keys, *args))
    return int(epoch), (None if count < 0 else count)


def keys_changed() -> None:
    """Make every worker re-read its keys from the database on its next request.

    Called by every service that writes a change that can alter an authentication outcome. The
    epoch is replaced now and again once the transaction commits: a worker that re-read the
    database between the two saw the old rows, and the second replacement makes it read again.
    """
    local_keys.clear()
    _publish_epoch()
    if connection.in_atomic_block:
        transaction.on_commit(_publish_epoch)


def _publish_epoch() -> None:
    local_keys.clear()
    if not shared_epoch_available():  # nothing is kept anywhere: there is nothing to tell
        return
    try:
        caches["default"].set(EPOCH_KEY, new_epoch(), timeout=None)
    except Exception as exc:  # unreachable: entries elsewhere expire after LOCAL_TTL_SECONDS
        logger.warning("keys epoch not published, cache unavailable: %s", type(exc).__name__)
