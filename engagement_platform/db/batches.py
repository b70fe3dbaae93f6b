"""Work done a chunk per transaction: short locks, and a run that is killed keeps the chunks it finished."""

from collections.abc import Callable, Iterator, Sized
from typing import TypeVar

from django.db import transaction

Rows = TypeVar("Rows", bound=Sized)


def chunked_transactions(step: Callable[[int], Rows], chunk: int) -> Iterator[Rows]:
    """Run `step(chunk)` in a transaction of its own until it returns fewer than `chunk` rows; yields each
    return (the rows it deleted, say)."""
    while True:
        with transaction.atomic():
            rows = step(chunk)
        yield rows
        if len(rows) < chunk:
            return
