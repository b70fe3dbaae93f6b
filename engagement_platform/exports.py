"""Exports (contract section 9): rows streamed from the database as NDJSON or CSV attachments.

An export is a queryset (filtered, ordered) and a line: its `Column`s, each a key of the line (and a
CSV header), the model field it comes from and how that field is written. The line is defined once
and both ways of writing it are derived from it:

- PostgreSQL writes each line itself (the NDJSON line as JSON text, the CSV row as text columns:
  timestamps in the API's forms, ids as canonical text, metadata as JSON text) and streams them
  with `COPY (query) TO STDOUT`; Python only gathers them into chunks. Formatting each row in Python
  costs several times the database's own output, and a cursor's fetches leave the database idle
  while Python works.
- Elsewhere (SQLite) the rows are read with the ORM's iterator and written by `python_line`.

Memory stays flat whatever the number of rows: one fetched batch and one chunk at a time.

Every export reads from the database `reading_from_replica` picks for its project (contract section 10:
the replica, or the primary within the project's read-your-writes window or while the replica is down),
through `replica_stream` (engagement_platform/db/replica.py): the first chunk is read before the
response starts, so a replica failing before it is answered by the primary as if nothing happened; a
failure after it cuts the transfer short (logged), since rows already sent cannot be taken back.
"""

import csv
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import orjson
from django.db import connections
from django.db.models import Expression, F, TextField
from django.http import HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase

from engagement_platform.clock import iso_exact, iso_ms
from engagement_platform.db.replica import replica_stream

NDJSON = "ndjson"
CSV = "csv"
CONTENT_TYPES = {NDJSON: "application/x-ndjson", CSV: "text/csv; charset=utf-8"}
# Rows fetched from the server-side cursor per round trip, and the size of each chunk written to the client.
FETCH_ROWS = 5000
CHUNK_BYTES = 64 * 1024

# How a column's value is written (NDJSON value; CSV cell: empty for null).
TEXT = "text"  # as stored
ENUM = "enum"  # as stored, a choice value: nothing in it needs escaping
UUID = "uuid"  # canonical text
IP = "ip"  # the address, no prefix length
TIME_EXACT = "time_exact"  # iso_exact: seconds, and microseconds when there are any, `Z`
TIME_MS = "time_ms"  # iso_ms: milliseconds, `Z` (render side)
JSON = "json"  # NDJSON: the value itself; CSV: its JSON text

_KEY = re.compile(r"[A-Za-z][A-Za-z_]*")


@dataclass(frozen=True)
class Column:
    key: str
    field: str
    kind: str = TEXT

    def __post_init__(self):
        if not _KEY.fullmatch(self.key):  # keys are written into SQL as literals
            raise ValueError(f"Not a plain key: {self.key!r}")


# Python: one stored value as the line writes it ---------------------------------------------------------------

_PYTHON = {
    TEXT: lambda value: value,
    ENUM: lambda value: value,
    UUID: lambda value: None if value is None else str(value),
    IP: lambda value: value,
    TIME_EXACT: lambda value: None if value is None else iso_exact(value),
    TIME_MS: iso_ms,
    JSON: lambda value: value,
}


def python_line(columns: tuple[Column, ...], row: tuple) -> dict:
    """A row of the columns' fields (in order) as the line's object."""
    return {column.key: _PYTHON[column.kind](value) for column, value in zip(columns, row, strict=True)}


def csv_cell(value):
    """A CSV cell: empty for null, JSON text for an object or a list, the value's text otherwise."""
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode("utf-8")
    return value


# PostgreSQL: the same lines written by the database, copied out ------------------------------------------------


class _Sql(Expression):
    """`template` around one compiled expression (`{0}` where it goes, as often as needed), as text."""

    output_field = TextField()

    def __init__(self, template: str, expression):
        super().__init__(output_field=TextField())
        self.template, self.expression = template, expression

    def get_source_expressions(self):
        return [self.expression]

    def set_source_expressions(self, exprs):
        [self.expression] = exprs

    def as_sql(self, compiler, connection):
        sql, params = compiler.compile(self.expression)
        uses = self.template.count("{0}")
        return self.template.format(sql), list(params) * uses


_UTC = "({0} AT TIME ZONE 'UTC')"
# A column's value as text (a CSV cell; NULL stays NULL).
_PG_TEXT = {
    TEXT: "{0}",
    ENUM: "{0}",
    UUID: "({0})::text",
    IP: "host({0})",
    TIME_EXACT: (f"(to_char({_UTC}, 'YYYY-MM-DD\"T\"HH24:MI:SS') || CASE WHEN to_char({_UTC}, 'US') = '000000' "
                 f"THEN '' ELSE to_char({_UTC}, '.US') END || 'Z')"),
    TIME_MS: f"to_char({_UTC}, 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')",
    JSON: "({0})::text",
}
# A column's value as JSON text (never NULL). Text that may need escaping goes through to_json; ids, enum
# values and timestamps are quoted as they are (they hold no character JSON escapes). A concatenation costs
# about half of json_build_object, which looks up every argument's type on every row.
_PG_JSON = {
    TEXT: "coalesce(to_json({0})::text, 'null')",
    JSON: "coalesce(({0})::text, 'null')",
}


def _pg_json_value(column: Column) -> str:
    return _PG_JSON.get(column.kind, "coalesce('\"' || " + _PG_TEXT[column.kind] + " || '\"', 'null')")


class _JsonLine(Expression):
    """The line's object as JSON text, keys in the columns' order."""

    output_field = TextField()

    def __init__(self, columns: tuple[Column, ...]):
        super().__init__(output_field=TextField())
        self.columns = columns
        self.values = [_Sql(_pg_json_value(column), F(column.field)) for column in columns]

    def get_source_expressions(self):
        return self.values

    def set_source_expressions(self, exprs):
        self.values = list(exprs)

    def as_sql(self, compiler, connection):
        parts, params = [], []
        for index, (column, value) in enumerate(zip(self.columns, self.values, strict=True)):
            sql, value_params = compiler.compile(value)
            parts.append(("'{\"" if index == 0 else "',\"") + column.key + "\":' || " + sql)
            params += value_params
        return "(" + " || ".join(parts) + " || '}')", params


def _database_writes_lines(using: str) -> bool:
    return connections[using].vendor == "postgresql"


def copied_chunks(queryset, *, csv_format: bool) -> Iterator[bytes]:
    """The rows of a `values_list` queryset as PostgreSQL writes them (`COPY (query) TO STDOUT`), in chunks,
    from the queryset's database (`queryset.db`). Its failures are Django's database errors, as a query's.

    COPY streams: the server sends rows as it makes them and this reads them as they come, so the
    database and the process writing the response work at the same time, in constant memory. Text
    format (a one-column query of JSON lines): the only escape COPY adds to JSON text is the doubled
    backslash (JSON text holds no raw control characters), undone here. CSV format: NULL is an empty cell.
    Closing the generator early (a client that went away) closes the database connection, which ends the copy.
    """
    import psycopg

    connection = connections[queryset.db]
    sql, params = queryset.query.sql_with_params()
    chunk_bytes = CHUNK_BYTES
    copied = False
    try:
        with connection.wrap_database_errors:  # psycopg's errors as Django's (a replica failing is one)
            cursor = connection.cursor()
            raw = cursor.cursor
            query = psycopg.ClientCursor(raw.connection).mogrify(sql, params)
            options = " (FORMAT csv)" if csv_format else ""
            copying = raw.copy(f"COPY ({query}) TO STDOUT{options}")
            buffer = bytearray()
            for data in copying.__enter__():
                buffer += data
                if len(buffer) >= chunk_bytes:
                    yield _unescaped(buffer, csv_format)
                    buffer = bytearray()
            if buffer:
                yield _unescaped(buffer, csv_format)
            copied = True
    finally:
        if copied:
            copying.__exit__(None, None, None)
            cursor.close()
        else:
            # The client went away (or the copy failed) mid-copy: the connection is closed, which ends the
            # copy on the server at once; the next request opens a new one. (Cancelling instead races the
            # cancel signal against the statements that follow on the same connection.)
            connection.close()


def _unescaped(buffer: bytearray, csv_format: bool) -> bytes:
    return bytes(buffer) if csv_format else bytes(buffer).replace(b"\\\\", b"\\")


# The rows of an export, in either format -------------------------------------------------------------------------


def streamed_rows(queryset, *, chunk_size: int | None = None) -> Iterator:
    """The rows of a `values_list` queryset through the ORM's iterator, fetched `chunk_size` at a time."""
    yield from queryset.iterator(chunk_size=chunk_size or FETCH_ROWS)


def ndjson_chunks(queryset, columns: tuple[Column, ...]) -> Iterator[bytes]:
    """One JSON object a line, in chunks of about CHUNK_BYTES."""
    if _database_writes_lines(queryset.db):
        yield from copied_chunks(queryset.annotate(export_line=_JsonLine(columns)).values_list("export_line"),
                                 csv_format=False)
        return
    chunk_bytes = CHUNK_BYTES
    parts, size = [], 0
    dumps = orjson.dumps
    for row in streamed_rows(queryset.values_list(*(column.field for column in columns))):
        line = dumps(python_line(columns, row))
        parts.append(line)
        size += len(line) + 1
        if size >= chunk_bytes:
            parts.append(b"")
            yield b"\n".join(parts)
            parts, size = [], 0
    if parts:
        parts.append(b"")
        yield b"\n".join(parts)


def csv_chunks(queryset, columns: tuple[Column, ...]) -> Iterator[bytes]:
    """A header row of the columns' keys, then one row per stored row, in chunks of about CHUNK_BYTES.
    Lines end with LF, as PostgreSQL's CSV writes them. The header goes with the first rows, so the first
    chunk is the database's answer (`replica_stream` retries a stream that fails before it)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([column.key for column in columns])
    if _database_writes_lines(queryset.db):
        names = [f"export_{n}" for n in range(len(columns))]
        annotated = queryset.annotate(**{name: _Sql(_PG_TEXT[column.kind], F(column.field))
                                         for name, column in zip(names, columns, strict=True)})
        copied = copied_chunks(annotated.values_list(*names), csv_format=True)
        yield buffer.getvalue().encode("utf-8") + next(copied, b"")
        yield from copied
        return
    chunk_bytes, writerow, cell = CHUNK_BYTES, writer.writerow, csv_cell
    for row in streamed_rows(queryset.values_list(*(column.field for column in columns))):
        writerow([cell(value) for value in python_line(columns, row).values()])
        if buffer.tell() >= chunk_bytes:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode("utf-8")


def export_response(content: bytes | Iterable[bytes], *, export_format: str, filename: str) -> HttpResponseBase:
    """An attachment (streamed unless `content` is the whole body): `filename` gets the format's extension."""
    response_class = HttpResponse if isinstance(content, bytes) else StreamingHttpResponse
    response = response_class(content, content_type=CONTENT_TYPES[export_format])
    response["Content-Disposition"] = f'attachment; filename="{filename}.{export_format}"'
    return response


def stream_export(queryset, *, project, columns: tuple[Column, ...], export_format: str,
                  filename: str) -> StreamingHttpResponse:
    """Every row of `queryset` (filtered and ordered, of `project`: a project or its id) as a line of
    `columns`, streamed as an attachment.

    Read from the replica when one is configured and the project has not written within the
    read-your-writes window, else from the primary (contract section 10). The first chunk is read
    before the response is returned: a replica failing before it is retried on the primary and the
    client sees an ordinary response; a failure once bytes may have been sent ends the transfer early
    with an error logged, and is not retried (`replica_stream`)."""
    chunks_of = csv_chunks if export_format == CSV else ndjson_chunks
    chunks = replica_stream(project, lambda using: chunks_of(queryset.using(using), columns))
    return export_response(chunks, export_format=export_format, filename=filename)
