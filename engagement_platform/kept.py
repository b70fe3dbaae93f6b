"""Values a worker process keeps between requests, each tagged with the shared epoch read before it was loaded.

Used where a shared epoch (see `apikeys.keycache`) tells when a kept value may no longer be the database's
truth: the verified API keys and the open share links. Reads need no lock (a dict lookup); changes take it.
Entries expire after `ttl_seconds`, which bounds how long a change made outside the platform's services (SQL
by hand) goes unseen, and the oldest entry makes room when `max_entries` are kept.
"""

import threading
import time
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Kept(Generic[T]):
    value: T
    epoch: int  # the shared epoch read before the database read that loaded `value`
    loaded_at: float


class KeptByEpoch(Generic[T]):
    """A process's kept values by key, shared by its threads."""

    def __init__(self, *, ttl_seconds: float, max_entries: int):
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self._entries: dict[str, Kept[T]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> Kept[T] | None:
        entry = self._entries.get(key)
        if entry is None or time.monotonic() - entry.loaded_at > self.ttl_seconds:
            return None
        return entry

    def keep(self, key: str, value: T, *, epoch: int) -> None:
        with self._lock:  # every change under the lock: eviction iterates the dict
            if len(self._entries) >= self.max_entries:
                self._entries.pop(next(iter(self._entries)), None)
            self._entries[key] = Kept(value=value, epoch=epoch, loaded_at=time.monotonic())

    def drop(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
