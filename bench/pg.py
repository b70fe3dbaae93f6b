"""The benchmark's own PostgreSQL database: create, connect, time statements, drop."""

import os
import time
from contextlib import contextmanager

import psycopg

SERVER_URL = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432")


def database_url(name: str) -> str:
    return f"{SERVER_URL}/{name}"


def _admin():
    return psycopg.connect(database_url("postgres"), autocommit=True)


def create_database(name: str) -> None:
    with _admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(name: str) -> None:
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def connect(name: str, **kwargs):
    conn = psycopg.connect(database_url(name), autocommit=True, **kwargs)
    try:
        yield conn
    finally:
        conn.close()


def time_query(conn, sql: str, params, *, repeat: int, warmup: int = 5) -> list[float]:
    """Wall time in seconds of each of `repeat` executions of a read query (rows fetched)."""
    with conn.cursor() as cur:
        for _ in range(warmup):
            cur.execute(sql, params)
            cur.fetchall()
        timings = []
        for _ in range(repeat):
            started = time.perf_counter()
            cur.execute(sql, params)
            cur.fetchall()
            timings.append(time.perf_counter() - started)
    return timings


def copy_file(conn, table: str, columns: list[str], path: str, chunk: int = 1 << 20) -> float:
    """COPY a tab-separated file into `table`; returns the seconds it took (one transaction)."""
    started = time.perf_counter()
    with conn.transaction(), conn.cursor() as cur, open(path, "rb") as src:
        with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            while data := src.read(chunk):
                copy.write(data)
    return time.perf_counter() - started
