"""The NDJSON reader of the backfill commands: one line read, judged and reported the same way everywhere.

A backfill reads a file (or `-`, standard input) line by line. Each line is decoded (strict JSON,
`jsonio.loads_line`) and handed to the command's own line parser, which returns the parsed item or
the reasons it is refused; an optional `prepare` then turns a good item into what the storer takes
(a row, its content-derived id included). A refused line is reported on stderr with its line number
(`line 7: rejected: <reasons>`), in line order; blank lines are skipped. On a terminal a progress bar
follows the bytes read. The totals end in one summary line:
`accepted N, duplicates N, rejected N (lines 2, 5 and 3 more).`

**Parsing workers.** Decoding, checking and preparing cost about 30 µs a line, as much as the
database's work for it, so for a file of at least `WORKERS_MIN_BYTES` the reader forks
`PARSE_WORKERS` parsing processes when it is entered (`with NdjsonReader(...) as reader`, before the
pipeline starts its threads). The reader still reads the lines itself, in chunks of `CHUNK_LINES`
numbered lines dealt to the workers in turn; each worker hands back its chunk's good items and
refusals, and the reader takes the chunks back in the order it dealt them, so items, line numbers,
refusals and their order are exactly those of the one-process path. At most `CHUNKS_AHEAD` chunks
per worker are in flight. A worker never touches the database: it inherits the parent's connections
with the fork, keeps them unused (and unfreed, so nothing is sent on them) and ends with `os._exit`.
It ignores SIGINT: a Ctrl-C reaches the parent, which stops the workers on the way out, as it does
after any error (reading, parsing or storing); a failure inside a worker is raised by the reader.

Standard input and files under `WORKERS_MIN_BYTES` are parsed in the reading thread itself: for a few
thousand lines, forking and handing chunks over cost more than they save, and the size of standard
input is not known in advance. Either way is the same on PostgreSQL and SQLite: workers parse only.

Memory stays constant whatever the file size: lines are read a chunk at a time, a few chunks are in
flight, and only the first `SUMMARY_LINE_NUMBERS` rejected line numbers are kept.
"""

import bisect
import contextlib
import multiprocessing
import os
import queue
import signal
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
# Parsing workers (see the module docstring).
PARSE_WORKERS = 1
WORKERS_MIN_BYTES = 1 << 20
CHUNK_LINES = 1000
CHUNKS_AHEAD = 3
WORKER_STOP_SECONDS = 5

# A line parser: the decoded JSON value -> (item, {}) or (None, {field: reason}); "" names the whole line.
LineParser = Callable[[object], tuple[object | None, dict[str, str]]]
# What the storer takes, made from a good item (in the parsing worker when there is one).
Prepare = Callable[[object], object]


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

    Used as a context manager, which starts the parsing workers when the input is large enough and
    stops them on the way out. `items()` may run on a thread of its own (the reader thread of a
    pipeline) while storers call `reject` and `tally.add` from theirs.
    """

    def __init__(self, source: Input, *, parse: LineParser, stderr, verbosity: int, desc: str = "backfill",
                 prepare: Prepare | None = None, workers: int | None = None):
        self.source = source
        self.parse = parse
        self.prepare = prepare
        self.stderr = stderr
        self.verbosity = verbosity
        self.desc = desc
        self.tally = Tally()
        self.show_progress = verbosity >= 1 and sys.stderr.isatty()
        self.workers = self._default_workers() if workers is None else workers
        self._pool: ParsingPool | None = None

    def _default_workers(self) -> int:
        size = self.source.total_bytes
        return PARSE_WORKERS if size is not None and size >= WORKERS_MIN_BYTES else 0

    def __enter__(self) -> "NdjsonReader":
        if self.workers:
            self._pool = ParsingPool(self.workers, parse=self.parse, prepare=self.prepare)
        return self

    def __exit__(self, *exc_info) -> None:
        if self._pool:
            self._pool.stop()
            self._pool = None

    def items(self) -> Iterator[tuple[int, object]]:
        """(line number, item) for every good line; bad lines are reported and counted, blank ones skipped."""
        with tqdm(total=self.source.total_bytes, unit="B", unit_scale=True, desc=self.desc,
                  disable=not self.show_progress, file=sys.stderr) as progress:
            lines = self._lines(progress.update if self.show_progress else None)
            if self._pool:
                outcomes = self._pool.outcomes(chunks(lines, CHUNK_LINES))
            else:
                outcomes = parse_lines(lines, parse=self.parse, prepare=self.prepare)
            reject = self.reject
            for number, item, reason in outcomes:
                if reason is None:
                    yield number, item
                else:
                    reject(number, reason)

    def _lines(self, update) -> Iterator[tuple[int, bytes]]:
        for number, line in enumerate(self.source.stream, start=1):
            if update:
                update(len(line))
            yield number, line

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


def parse_lines(lines: Iterable[tuple[int, bytes]], *, parse: LineParser,
                prepare: Prepare | None) -> Iterator[tuple[int, object, str | None]]:
    """(line number, item, None) for a good line, (line number, None, reason) for a bad one; blank lines skipped."""
    for number, line in lines:
        if isinstance(line, str):
            line = line.encode("utf-8")
        if not line.strip():
            continue
        try:
            raw = loads_line(line)
        except ValueError as exc:
            yield number, None, f"not valid JSON ({exc})"
            continue
        item, errors = parse(raw)
        if errors:
            yield number, None, reasons(errors)
        else:
            yield number, (prepare(item) if prepare else item), None


def chunks(items: Iterable, size: int) -> Iterator[list]:
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class ParsingPool:
    """Forked processes that parse chunks of numbered lines; outcomes come back in the order chunks were dealt."""

    def __init__(self, count: int, *, parse: LineParser, prepare: Prepare | None):
        context = multiprocessing.get_context("fork")
        self._channels, self._processes = [], []
        self._drained = False  # every dealt chunk's outcomes taken back
        self._stopping = threading.Event()  # the feeding thread's signal to give up
        try:
            for n in range(count):
                ours, theirs = context.Pipe(duplex=True)
                process = context.Process(target=_parse_chunks, args=(theirs, parse, prepare),
                                          name=f"backfill-parser-{n}", daemon=True)
                process.start()
                theirs.close()
                self._channels.append(ours)
                self._processes.append(process)
        except BaseException:
            self.stop()
            raise

    def outcomes(self, chunks_in: Iterable[list]) -> Iterator[tuple[int, object, str | None]]:
        """The outcomes of `chunks_in`'s lines, in order: a feeding thread reads the chunks and deals them to the
        workers in turn (at most CHUNKS_AHEAD each in flight) while this generator takes the results back.

        Dealing and collecting run on different threads because a worker sending a large result and the
        parent sending it the next chunk would otherwise each wait for the other to read.
        """
        channels = self._channels
        slots = threading.Semaphore(CHUNKS_AHEAD * len(channels))
        dealt: queue.Queue = queue.Queue()  # the channel of each dealt chunk in dealing order, then _END or an error
        stop = self._stopping

        def feed():
            try:
                for n, chunk in enumerate(chunks_in):
                    while not slots.acquire(timeout=0.1):
                        if stop.is_set():
                            return
                    if stop.is_set():
                        return
                    channel = channels[n % len(channels)]
                    channel.send(chunk)
                    dealt.put(channel)
                dealt.put(_END)
            except BaseException as exc:  # noqa: BLE001 - raised by the collecting generator, after earlier chunks
                dealt.put(exc)

        feeder = threading.Thread(target=feed, name="backfill-parse-feeder", daemon=True)
        feeder.start()
        try:
            while True:
                channel = dealt.get()
                if channel is _END:
                    self._drained = True
                    return
                if isinstance(channel, BaseException):
                    raise channel
                outcomes = self._collect(channel)
                slots.release()
                yield from outcomes
        finally:
            stop.set()
            if not self._drained:
                self._terminate()  # a feeder blocked sending to a worker gets a broken pipe
            # Bounded: the feeder may sit in a blocking read of standard input; it is a daemon thread.
            feeder.join(timeout=READER_JOIN_SECONDS)

    @staticmethod
    def _collect(channel) -> list:
        try:
            kind, value = channel.recv()
        except EOFError:
            raise RuntimeError("a parsing worker of the backfill ended unexpectedly") from None
        if kind == "error":
            raise value
        return value

    def stop(self) -> None:
        """Stop every worker: after a whole input, ask each to end (their channels are idle); else terminate them."""
        self._stopping.set()
        if self._drained:
            for channel in self._channels:
                with contextlib.suppress(OSError, ValueError):
                    channel.send(None)
            for process in self._processes:
                process.join(timeout=WORKER_STOP_SECONDS)
        self._terminate()
        for channel in self._channels:
            channel.close()
        self._channels, self._processes = [], []

    def _terminate(self) -> None:
        for process in self._processes:
            if process.is_alive():
                process.terminate()
            process.join()

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self._processes]


_inherited_connections: list = []


_END = object()


def _parse_chunks(channel, parse: LineParser, prepare: Prepare | None) -> None:
    """A parsing worker: chunks of numbered lines in, their outcomes out, until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _keep_parent_connections_unused()
    while True:
        try:
            chunk = channel.recv()
        except (EOFError, OSError):
            return
        if chunk is None:
            return
        try:
            result = ("ok", list(parse_lines(chunk, parse=parse, prepare=prepare)))
        except Exception as exc:  # noqa: BLE001 - raised by the reader in the parent
            result = ("error", _portable(exc))
        try:
            channel.send(result)
        except (OSError, ValueError):
            return


def _keep_parent_connections_unused() -> None:
    """The database connections inherited with the fork are the parent's: hold them (never freed, so never
    closed from here) and detach them from Django, so nothing in this process can send on them."""
    from django.db import connections

    for alias in connections:
        wrapper = connections[alias]
        if wrapper.connection is not None:
            _inherited_connections.append(wrapper.connection)
            wrapper.connection = None


def _portable(exc: Exception) -> Exception:
    """The exception itself if it survives pickling, else a RuntimeError naming it."""
    import pickle

    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:  # noqa: BLE001 - any failure to round-trip
        return RuntimeError(f"parsing failed: {exc!r}")
    return exc


def reasons(errors: dict[str, str]) -> str:
    return "; ".join(f"{field}: {reason}" if field else reason for field, reason in errors.items())


def numbered(items: Iterable[tuple[int, object]]) -> Iterator[object]:
    """The items alone, without their line numbers."""
    for _number, item in items:
        yield item




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
