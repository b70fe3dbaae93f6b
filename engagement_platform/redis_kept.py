"""Commands on one kept Redis connection of the shared cache, for the hottest paths.

Django's RedisCache builds a redis-py client per call, and a client call goes through retry and
pooling layers that cost more Python than the round trip itself. The hot paths (the rate-limit
count, the report body read) send their command on a connection of the cache's own pool that
each cache object (Django keeps one per thread) holds on to.
"""

from django.core.cache.backends.redis import RedisCache
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError


class KeptConnection:
    """One connection of a RedisCache's pool, held by that cache object's thread."""

    def __init__(self, pool):
        self.pool = pool
        self.connection = None

    def execute(self, *command, script: tuple | None = None):
        """Send `command` and return its reply. `script`: the EVAL to send instead when the server
        answers an EVALSHA with NOSCRIPT (a new or flushed server). Raises when Redis is unreachable."""
        kept = self.connection
        try:
            return self._run(kept or self.pool.get_connection(), command, script)
        except RedisConnectionError:
            if kept is None:
                raise
            # The kept connection died (a server restart, an idle timeout): once more on a new one.
            return self._run(self.pool.get_connection(), command, script)

    def _run(self, connection, command: tuple, script: tuple | None):
        self.connection = None  # kept again only after a clean reply
        try:
            connection.send_command(*command)
            try:
                reply = connection.read_response()
            except NoScriptError:
                if script is None:
                    raise
                connection.send_command(*script)
                reply = connection.read_response()
        except Exception:
            connection.disconnect()
            self.pool.release(connection)
            raise
        self.connection = connection
        return reply


def kept_connection(backend) -> KeptConnection | None:
    """The kept connection of django.core.cache's RedisCache `backend`, or None for any other backend."""
    if not isinstance(backend, RedisCache):
        return None
    kept = backend.__dict__.get("_kept_connection")
    if kept is None:
        kept = backend._kept_connection = KeptConnection(backend._cache.get_client(write=True).connection_pool)
    return kept
