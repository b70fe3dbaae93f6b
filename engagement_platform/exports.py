"""Exports (contract section 9): rows streamed from the database as NDJSON or CSV attachments.

An export reads its rows through `streamed_rows` (a server-side cursor on PostgreSQL, inside a
transaction; SQLite's own cursor steps through the result), maps each row to its line's object
with one function of the exporting app, and writes the lines in chunks of about `CHUNK_BYTES`.
Memory stays flat whatever the number of rows: one fetched batch and one chunk at a time.
"""

import csv
import io
from collections.abc import Callable, Iterable, Iterator

import orjson
from django.db import connection, transaction
from django.http import HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase

NDJSON = "ndjson"
CSV = "csv"
CONTENT_TYPES = {NDJSON: "application/x-ndjson", CSV: "text/csv; charset=utf-8"}
# Rows fetched from the server-side cursor per round trip, and the size of each chunk written to the client.
FETCH_ROWS = 5000
CHUNK_BYTES = 64 * 1024


def streamed_rows(queryset, *, chunk_size: int | None = None) -> Iterator[tuple]:
    """The rows of a `values_list` queryset, fetched `chunk_size` at a time.

    On PostgreSQL the iterator is a named (server-side) cursor, declared inside a transaction so the
    server streams it too (a cursor declared outside one is held: its whole result is materialised
    when the declaring statement commits). Closing the generator early ends the transaction.
    """
    chunk_size = chunk_size or FETCH_ROWS
    if connection.vendor == "postgresql":
        with transaction.atomic(using=queryset.db):
            yield from queryset.iterator(chunk_size=chunk_size)
    else:
        yield from queryset.iterator(chunk_size=chunk_size)


def csv_cell(value):
    """A CSV cell: empty for null, JSON text for an object or a list, the value's text otherwise."""
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode("utf-8")
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def ndjson_chunks(objects: Iterable[dict]) -> Iterator[bytes]:
    """One JSON object a line, in chunks of about CHUNK_BYTES."""
    parts, size = [], 0
    dumps, chunk_bytes = orjson.dumps, CHUNK_BYTES
    for obj in objects:
        line = dumps(obj)
        parts.append(line)
        size += len(line) + 1
        if size >= chunk_bytes:
            parts.append(b"")
            yield b"\n".join(parts)
            parts, size = [], 0
    if parts:
        parts.append(b"")
        yield b"\n".join(parts)


def csv_chunks(columns: tuple[str, ...], objects: Iterable[dict]) -> Iterator[bytes]:
    """A header row of `columns`, then one row per object (its values in that order), in chunks."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    cell, chunk_bytes = csv_cell, CHUNK_BYTES
    for obj in objects:
        writer.writerow([cell(obj[name]) for name in columns])
        if buffer.tell() >= chunk_bytes:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode("utf-8")


def encoded_chunks(export_format: str, columns: tuple[str, ...], objects: Iterable[dict]) -> Iterator[bytes]:
    if export_format == CSV:
        return csv_chunks(columns, objects)
    return ndjson_chunks(objects)


def export_response(content: bytes | Iterable[bytes], *, export_format: str, filename: str) -> HttpResponseBase:
    """An attachment (streamed unless `content` is the whole body): `filename` gets the format's extension."""
    response_class = HttpResponse if isinstance(content, bytes) else StreamingHttpResponse
    response = response_class(content, content_type=CONTENT_TYPES[export_format])
    response["Content-Disposition"] = f'attachment; filename="{filename}.{export_format}"'
    return response


def stream_export(queryset, *, line: Callable[[tuple], dict], columns: tuple[str, ...], export_format: str,
                  filename: str) -> StreamingHttpResponse:
    """The whole export of `queryset` (values_list rows, mapped to objects by `line`) as an attachment."""
    objects = map(line, streamed_rows(queryset))
    return export_response(encoded_chunks(export_format, columns, objects), export_format=export_format,
                           filename=filename)
