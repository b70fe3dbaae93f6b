"""Commands on one kept Redis connection of the shared cache, for the hottest paths.

Django's RedisCache builds a redis-py client per call, and a client call goes through retry and
pooling layers that cost more Python than the round trip itself. The hot paths (the rate-limit
count, the kept response bodies) send their command on a connection of the cache's own pool that
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
        return self._exchange(lambda connection: _reply(connection, command, script))

    def execute_many(self, *commands: tuple) -> list:
        """Send `commands` in one round trip (pipelined, not a transaction) and return their replies."""
        return self._exchange(lambda connection: _replies(connection, commands))

    def _exchange(self, talk):
        kept = self.connection
        try:
            return self._run(kept or self.pool.get_connection(), talk)
        except RedisConnectionError:
            if kept is None:
                raise
            # The kept connection died (a server restart, an idle timeout): once more on a new one.
            return self._run(self.pool.get_connection(), talk)

    def _run(self, connection, talk):
        self.connection = None  # kept again only after a clean reply
        try:
            reply = talk(connection)
        except Exception:
            connection.disconnect()
            self.pool.release(connection)
            raise
        self.connection = connection
        return reply


def _reply(connection, command: tuple, script: tuple | None):
    connection.send_command(*command)
    try:
        return connection.read_response()
    except NoScriptError:
        if script is None:
            raise
        connection.send_command(*script)
        return connection.read_response()


def _replies(connection, commands: tuple) -> list:
    connection.send_packed_command(connection.pack_commands(commands))
    return [connection.read_response() for _ in commands]


def kept_connection(backend) -> KeptConnection | None:
    """The kept connection of django.core.cache's RedisCache `backend`, or None for any other backend."""
    if not isinstance(backend, RedisCache):
        return None
    kept = backend.__dict__.get("_kept_connection")
    if kept is None:
        kept = backend._kept_connection = KeptConnection(backend._cache.get_client(write=True).connection_pool)
    return kept
