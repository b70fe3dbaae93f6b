"""The NDJSON reader of the backfill commands: one line read, judged and reported the same way everywhere.

A backfill reads a file (or `-`, standard input) line by line. Each line is decoded (strict JSON,
`jsonio.loads_line`) and handed to the command's own line parser, which returns the parsed item or
the reasons it is refused. A refused line is reported on stderr with its line number as it happens
(`line 7: rejected: <reasons>`); blank lines are skipped. On a terminal a progress bar follows the
bytes read. The totals end in one summary line:
`accepted N, duplicates N, rejected N (lines 2, 5 and 3 more).`

Memory stays constant whatever the file size: lines are read one at a time and only the first
`SUMMARY_LINE_NUMBERS` rejected line numbers are kept.
"""

import bisect
import contextlib
import os
import queue
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from django.core.management.base import CommandError
from tqdm import tqdm

from engagement_platform.jsonio import loads_line

# The summary names at most this many rejected line numbers (the lowest); each rejection is also reported
# as it happens.
SUMMARY_LINE_NUMBERS = 50
READER_JOIN_SECONDS = 5

# A line parser: the decoded JSON value -> (item, {}) or (None, {field: reason}); "" names the whole line.
LineParser = Callable[[object], tuple[object | None, dict[str, str]]]


class Tally:
    """Running totals in constant memory (only the lowest rejected line numbers are kept). Thread-safe."""

    def __init__(self):
        self.accepted = self.duplicates = self.rejected = 0
        self.rejected_lines: list[int] = []
        self._lock = threading.Lock()  # storers add from their own threads

    def add(self, *, accepted: int, duplicates: int) -> None:
        with self._lock:
            self.accepted += accepted
            self.duplicates += duplicates

    def reject(self, number: int) -> None:
        with self._lock:
            self.rejected += 1
            # Lines refused when their batch is stored arrive after later lines refused on reading.
            bisect.insort(self.rejected_lines, number)
            del self.rejected_lines[SUMMARY_LINE_NUMBERS:]

    def summary(self) -> str:
        text = f"accepted {self.accepted}, duplicates {self.duplicates}, rejected {self.rejected}"
        if self.rejected:
            lines = ", ".join(str(number) for number in self.rejected_lines)
            more = self.rejected - len(self.rejected_lines)
            text += f" (lines {lines}" + (f" and {more} more)" if more else ")")
        return text + "."


@dataclass(frozen=True)
class Input:
    stream: object  # iterates bytes lines
    total_bytes: int | None  # None for standard input


@contextlib.contextmanager
def open_input(path: str, *, stdin=None) -> Iterator[Input]:
    """The file at `path`, or standard input for `-`, as a binary line stream; CommandError if unreadable."""
    if path == "-":
        stream = stdin or sys.stdin
        yield Input(stream=getattr(stream, "buffer", stream), total_bytes=None)
        return
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed by the with block below
    except OSError as exc:
        raise CommandError(f"Cannot read {path}: {exc.strerror}.") from exc
    with handle:
        yield Input(stream=handle, total_bytes=os.fstat(handle.fileno()).st_size)


class NdjsonReader:
    """Reads one input for a backfill: numbered parsed lines, rejections reported, totals kept, a summary.

    `items()` may run on a thread of its own (the reader thread of a pipeline) while storers call
    `reject` and `tally.add` from theirs.
    """

    def __init__(self, source: Input, *, parse: LineParser, stderr, verbosity: int, desc: str = "backfill"):
        self.source = source
        self.parse = parse
        self.stderr = stderr
        self.verbosity = verbosity
        self.desc = desc
        self.tally = Tally()
        self.show_progress = verbosity >= 1 and sys.stderr.isatty()

    def items(self) -> Iterator[tuple[int, object]]:
        """(line number, parsed item) for every good line; bad lines are reported and counted, blank ones skipped."""
        with tqdm(total=self.source.total_bytes, unit="B", unit_scale=True, desc=self.desc,
                  disable=not self.show_progress, file=sys.stderr) as progress:
            update = progress.update if self.show_progress else None
            parse, reject = self.parse, self.reject
            for number, line in enumerate(self.source.stream, start=1):
                if update:
                    update(len(line))
                if isinstance(line, str):
                    line = line.encode("utf-8")
                if not line.strip():
                    continue
                try:
                    raw = loads_line(line)
                except ValueError as exc:
                    reject(number, f"not valid JSON ({exc})")
                    continue
                item, errors = parse(raw)
                if errors:
                    reject(number, reasons(errors))
                    continue
                yield number, item

    def batches(self, size: int) -> Iterator[list[tuple[int, object]]]:
        """`items()` in lists of at most `size`."""
        batch: list = []
        for pair in self.items():
            batch.append(pair)
            if len(batch) >= size:
                yield batch
                batch = []
        if batch:
            yield batch

    def reject(self, number: int, reason: str) -> None:
        self.tally.reject(number)
        if self.verbosity >= 1:
            self.stderr.write(f"line {number}: rejected: {reason}")

    def progress_bar(self, *, total: int, unit: str, desc: str):
        """A further progress bar of the same run (a recount after the load), shown under the same conditions."""
        return tqdm(total=total, unit=unit, desc=desc, disable=not self.show_progress, file=sys.stderr)

    def note(self, text: str, *, verbosity: int = 2) -> None:
        if self.verbosity >= verbosity:
            self.stderr.write(text)

    def finish(self, stdout) -> None:
        """The summary line, unless verbosity is 0."""
        if self.verbosity >= 1:
            stdout.write(self.tally.summary())


def reasons(errors: dict[str, str]) -> str:
    return "; ".join(f"{field}: {reason}" if field else reason for field, reason in errors.items())


def numbered(items: Iterable[tuple[int, object]]) -> Iterator[object]:
    """The items alone, without their line numbers."""
    for _number, item in items:
        yield item


_END = object()


def read_ahead(items: Iterable, *, depth: int = 2, name: str = "backfill-reader") -> Iterator:
    """`items`, produced by a thread of its own up to `depth` ahead: reading and parsing the next batch
    overlaps storing this one (the database's work releases the GIL), and memory stays `depth` batches.

    An error raised while producing is raised here, after the items produced before it. Stopping
    early (an error while storing) stops the producer at its next hand-over.
    """
    handed: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def hand_over(item) -> bool:
        while not stop.is_set():
            try:
                handed.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for item in items:
                if not hand_over(item):
                    return
            hand_over(_END)
        except BaseException as exc:  # noqa: BLE001 - raised on the consuming thread
            hand_over(exc)

    producer = threading.Thread(target=produce, name=name, daemon=True)
    producer.start()
    try:
        while True:
            item = handed.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        # Bounded: after a failure the producer may sit in a blocking read of standard input; it is a
        # daemon thread and goes with the process.
        producer.join(timeout=READER_JOIN_SECONDS)
