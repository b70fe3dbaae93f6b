"""Monthly range partitions of the tables that grow with traffic (PostgreSQL; SQLite keeps plain tables).

An app registers each of its partitioned tables from its `ready()` (`register`): the table, the column it
is partitioned by (a `timestamptz` or a `date`), and what must be settled before one of its partitions is
dropped (`before_drop`: the counters the rows added to, say). Its migration turns the plain table into a
partitioned one with `convert_to_monthly` (data, indexes, constraints and foreign keys kept; the primary
key and unique keys gain the partition column, as PostgreSQL requires).

Every table has a partition per month from the month of the longest retention's cutoff to
`MONTHS_AHEAD` months after the current one, and a default partition for any row outside them (a
backfill of old data, an event dated years ahead). `partitions_upkeep` (a periodic job of the worker)
creates the months that come into that range, moving rows the default partition holds for them, and
`expired_partitions_drop` drops the months whose rows every plan's retention has let go.
"""

import logging
import re
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.db import DEFAULT_DB_ALIAS, OperationalError, connection, connections, transaction

logger = logging.getLogger("engagement_platform.partitions")

MONTHS_AHEAD = 3
KNOWN_SECONDS = 60.0  # how long a process trusts its list of a database's partitions (`known_partitions`)
DROP_LOCK = 0x50415254_44524F50  # "PARTDROP": one partition drop at a time
# Creating or dropping a partition locks the parent and the tables its foreign keys reference, in an order a
# recording transaction may hold the other way round (a share inserted, then its event). The upkeep waits for a
# lock at most this long, below PostgreSQL's deadlock_timeout (1 s), so it gives way before the deadlock
# detector could pick a user's request as the victim, and tries again after a pause.
LOCK_TIMEOUT_MS = 300
LOCKED_ATTEMPTS = 5
LOCKED_PAUSE_SECONDS = 0.5
LOCK_NOT_AVAILABLE = "55P03"
DEFAULT_SUFFIX = "_pdefault"
_MONTH_SUFFIX = re.compile(r"_p(\d{4})_(\d{2})$")


@dataclass(frozen=True)
class PartitionedTable:
    table: str
    column: str
    # How long after its partition key a row's data still lasts: 0 for an event or a day's row, 6 days for a
    # week's row keyed by its Monday (a partition is dropped only when all its rows' data is past the cutoff).
    reach: timedelta = timedelta(0)
    # Called with the partition's name, in the transaction that drops it, before the drop: settles what the
    # partition's rows added elsewhere (counters, key tables).
    before_drop: Callable[[str], object] | None = None


_tables: dict[str, PartitionedTable] = {}


def register(table: PartitionedTable) -> None:
    _tables[table.table] = table


def registered() -> list[PartitionedTable]:
    return list(_tables.values())


def supported(using=None) -> bool:
    return (using or connection).vendor == "postgresql"


# Months -------------------------------------------------------------------------------------------------

def month_of(value: date | datetime) -> date:
    return date(value.year, value.month, 1)


def next_month(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def months_from(first: date, last: date) -> list[date]:
    """The months from `first`'s to `last`'s, both included."""
    months, month, last = [], month_of(first), month_of(last)
    while month <= last:
        months.append(month)
        month = next_month(month)
    return months


def months_kept(*, at: datetime, longest_retention_days: int) -> list[date]:
    """The months that have a partition of their own: from the longest retention's cutoff to MONTHS_AHEAD."""
    last = month_of(at)
    for _ in range(MONTHS_AHEAD):
        last = next_month(last)
    return months_from(month_of(at - timedelta(days=longest_retention_days)), last)


def partition_name(table: str, month: date) -> str:
    return f"{table}_p{month:%Y_%m}"


def default_partition_name(table: str) -> str:
    return table + DEFAULT_SUFFIX


def _month_of_partition(name: str) -> date | None:
    found = _MONTH_SUFFIX.search(name)
    return date(int(found[1]), int(found[2]), 1) if found else None


def _bound(month: date, column_type: str) -> str:
    if column_type == "date":
        return f"'{month:%Y-%m-%d}'"
    return f"'{month:%Y-%m-%d} 00:00:00+00'"


def _bounds(month: date, column_type: str) -> str:
    return f"FROM ({_bound(month, column_type)}) TO ({_bound(next_month(month), column_type)})"


def _month_end(month: date) -> datetime:
    """The first moment after `month` (UTC midnight of the next month's first day), for either column type."""
    end = next_month(month)
    return datetime(end.year, end.month, 1, tzinfo=UTC)


# Catalog reads ------------------------------------------------------------------------------------------

def _quote(name: str) -> str:
    return connection.ops.quote_name(name)


def _column_type(cursor, table: str, column: str) -> str:
    cursor.execute("SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
                   "WHERE a.attrelid = %s::regclass AND a.attname = %s AND NOT a.attisdropped", [table, column])
    column_type = cursor.fetchone()[0]
    if column_type not in ("date", "timestamp with time zone"):
        raise ValueError(f"{table}.{column} is {column_type}: monthly partitions need a date or a timestamptz")
    return column_type


def is_partitioned(cursor, table: str) -> bool:
    cursor.execute("SELECT 1 FROM pg_partitioned_table WHERE partrelid = to_regclass(%s)", [table])
    return cursor.fetchone() is not None


def partitions_of(cursor, table: str) -> list[str]:
    cursor.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                   "WHERE i.inhparent = %s::regclass ORDER BY c.relname", [table])
    return [row[0] for row in cursor.fetchall()]


def _columns(cursor, table: str) -> list[str]:
    cursor.execute("SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
                   "AND NOT attisdropped ORDER BY attnum", [table])
    return [row[0] for row in cursor.fetchall()]


# Reading months by their partitions' names ----------------------------------------------------------------
#
# A statement that names a partitioned table holds all its partitions: PostgreSQL 15 locks every one at each
# execution of a generic plan (pruning comes after), and plans each custom one anew. A statement prepared
# once and run often (the report) names the partitions of the months it reads instead. A month without a
# partition of its own keeps its rows in the default partition: such reads name the table. Partitions come
# and go only with upkeep and retention, so each process keeps its list of them for KNOWN_SECONDS; a month
# created meanwhile is read through its table, and a dropped one was past every plan's retention.

_known: dict[str, tuple[float, frozenset[str]]] = {}


def known_partitions(using: str = DEFAULT_DB_ALIAS) -> frozenset[str]:
    """The names of the registered tables' partitions on the database `using`, as listed at most KNOWN_SECONDS
    ago (the catalog is read again after that)."""
    listed = _known.get(using)
    if listed is not None and time.monotonic() - listed[0] < KNOWN_SECONDS:
        return listed[1]
    with connections[using].cursor() as cursor:
        cursor.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                       "JOIN pg_class parent ON parent.oid = i.inhparent WHERE parent.relname = ANY(%s)",
                       [sorted(_tables)])
        names = frozenset(row[0] for row in cursor.fetchall())
    _known[using] = (time.monotonic(), names)
    return names


def known_partitions_forget() -> None:
    """Read the catalog again at the next `known_partitions` (after this process created or dropped one)."""
    _known.clear()


def months_relation(table: str, columns: Iterable[str], first: date, last: date, *, alias: str,
                    known: frozenset[str]) -> str | None:
    """A FROM item (`... AS alias`) reading `table`'s rows of the months from `first`'s to `last`'s by their
    partitions' names (their `columns`), or None when one of those months has no partition in `known`."""
    names = [partition_name(table, month) for month in months_from(first, last)]
    if not all(name in known for name in names):
        return None
    if len(names) == 1:
        return f"{_quote(names[0])} AS {alias}"
    listed = ", ".join(_quote(column) for column in columns)
    # A UNION ALL of plain SELECTs in FROM is flattened by the planner: each partition's own index serves.
    return "(" + " UNION ALL ".join(f"SELECT {listed} FROM {_quote(name)}" for name in names) + f") AS {alias}"


def model_months_relation(model, first: date, last: date, *, alias: str, known: frozenset[str] | None) -> str:
    """A FROM item (`... AS alias`) reading `model`'s rows of the months from `first`'s to `last`'s: its
    partitions by name when `known` lists every one, else its table (`known` None: not partitioned here)."""
    table = model._meta.db_table
    if known is not None:
        columns = [field.column for field in model._meta.concrete_fields]
        named = months_relation(table, columns, first, last, alias=alias, known=known)
        if named is not None:
            return named
    return f"{_quote(table)} AS {alias}"


# Turning a plain table into a partitioned one (migrations) --------------------------------------------------

@dataclass(frozen=True)
class _Shape:
    """What a plain table carries besides its columns, read from the catalog before it is rebuilt."""

    primary_key: tuple[str, list[str]]
    uniques: list[tuple[str, list[str]]]  # constraints
    indexes: list[str]  # CREATE INDEX statements (unique indexes included)
    foreign_keys: list[tuple[str, str]]
    identity: list[str]


def _shape(cursor, table: str) -> _Shape:
    cursor.execute(
        "SELECT con.conname, con.contype, array_agg(a.attname ORDER BY k.ord) FROM pg_constraint con "
        "CROSS JOIN LATERAL unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord) "
        "JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum "
        "WHERE con.conrelid = %s::regclass AND con.contype IN ('p', 'u') GROUP BY con.conname, con.contype",
        [table])
    keys = cursor.fetchall()
    primary = next((name, list(columns)) for name, kind, columns in keys if kind == "p")
    uniques = sorted((name, list(columns)) for name, kind, columns in keys if kind == "u")
    cursor.execute("SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i "
                   "WHERE i.indrelid = %s::regclass AND NOT EXISTS "
                   "(SELECT 1 FROM pg_constraint con WHERE con.conindid = i.indexrelid) ORDER BY 1", [table])
    indexes = [row[0] for row in cursor.fetchall()]
    cursor.execute("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                   "WHERE conrelid = %s::regclass AND contype = 'f' ORDER BY conname", [table])
    foreign_keys = cursor.fetchall()
    cursor.execute("SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attidentity <> ''",
                   [table])
    identity = [row[0] for row in cursor.fetchall()]
    cursor.execute("SELECT conrelid::regclass::text FROM pg_constraint WHERE confrelid = %s::regclass "
                   "AND contype = 'f'", [table])
    referencing = [row[0] for row in cursor.fetchall()]
    if referencing:
        raise ValueError(f"{table} is referenced by {referencing}: a partitioned table's key includes its "
                         f"partition column, so those references cannot stay")
    return _Shape(primary, uniques, indexes, foreign_keys, identity)


def convert_to_monthly(schema_editor, table: str, column: str, *, dropped_uniques: Iterable[str] = (),
                       longest_retention_days: int | None = None, at: datetime | None = None) -> None:
    """Rebuild the plain `table` as one partitioned by month of `column`, rows and all (a migration's step).

    The primary key and every unique constraint gain `column`, except those named in `dropped_uniques`,
    which the caller replaces (a unique key across months cannot be kept by a partitioned table). Indexes
    and foreign keys are recreated with their names. Months get partitions as `months_kept` says.
    """
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        if is_partitioned(cursor, table):
            return
        column_type = _column_type(cursor, table, column)
        shape = _shape(cursor, table)
        unknown = set(dropped_uniques) - {name for name, _columns in shape.uniques}
        if unknown:
            raise ValueError(f"{table} has no unique constraint {sorted(unknown)}")
        at = at or datetime.now(UTC)
        if longest_retention_days is None:
            longest_retention_days = _longest_retention_days(cursor)

        def partitions_create(building: str) -> None:
            for month in months_kept(at=at, longest_retention_days=longest_retention_days):
                cursor.execute(f"CREATE TABLE {_quote(partition_name(table, month))} PARTITION OF "
                               f"{_quote(building)} FOR VALUES {_bounds(month, column_type)}")
            cursor.execute(f"CREATE TABLE {_quote(default_partition_name(table))} PARTITION OF {_quote(building)} "
                           f"DEFAULT")

        _table_rebuild(cursor, table, identity=shape.identity, suffix="__partitioned",
                       partitioned_by=column, before_copy=partitions_create)
        key_name, key_columns = shape.primary_key
        cursor.execute(f"ALTER TABLE {_quote(table)} ADD CONSTRAINT {_quote(key_name)} PRIMARY KEY "
                       f"({_key_columns(key_columns, column)})")
        for name, unique_columns in shape.uniques:
            if name not in dropped_uniques:
                cursor.execute(f"ALTER TABLE {_quote(table)} ADD CONSTRAINT {_quote(name)} UNIQUE "
                               f"({_key_columns(unique_columns, column)})")
        _indexes_and_references_add(cursor, table, shape.indexes, shape.foreign_keys)
        partition_indexes_name(cursor, table)
    known_partitions_forget()


def convert_to_plain(schema_editor, model) -> None:
    """Rebuild a partitioned table as the plain table `model` (a historical model) describes, rows and all:
    the reverse of `convert_to_monthly`. The primary key and unique constraints are the model's again;
    indexes and foreign keys are recreated with their names."""
    if schema_editor.connection.vendor != "postgresql":
        return
    table = model._meta.db_table
    with schema_editor.connection.cursor() as cursor:
        if not is_partitioned(cursor, table):
            return
        shape = _shape(cursor, table)
        indexes = [statement.replace(" ON ONLY ", " ON ") for statement in shape.indexes]
        key_name = shape.primary_key[0]
        _table_rebuild(cursor, table, identity=shape.identity, suffix="__plain")
        key = [field.column for field in (getattr(model._meta.pk, "fields", None) or [model._meta.pk])]
        cursor.execute(f"ALTER TABLE {_quote(table)} ADD CONSTRAINT {_quote(key_name)} PRIMARY KEY "
                       f"({', '.join(_quote(c) for c in key)})")
        for constraint in model._meta.constraints:
            fields = [model._meta.get_field(name).column for name in getattr(constraint, "fields", ())]
            if fields and getattr(constraint, "condition", None) is None:
                cursor.execute(f"ALTER TABLE {_quote(table)} ADD CONSTRAINT {_quote(constraint.name)} UNIQUE "
                               f"({', '.join(_quote(c) for c in fields)})")
        _indexes_and_references_add(cursor, table, indexes, shape.foreign_keys)
    known_partitions_forget()


def _table_rebuild(cursor, table: str, *, identity: list[str], suffix: str, partitioned_by: str | None = None,
                   before_copy: Callable[[str], None] | None = None) -> None:
    """Replace `table` by a copy of its columns and rows (plain, or partitioned by range of `partitioned_by`,
    whose partitions `before_copy` creates), without keys, indexes or foreign keys: the caller adds them.
    Identity sequences go on from the rows' largest value and keep the table's own names, as Django named them."""
    building = f"{table}{suffix}"
    partitioning = f" PARTITION BY RANGE ({_quote(partitioned_by)})" if partitioned_by else ""
    cursor.execute(f"CREATE TABLE {_quote(building)} (LIKE {_quote(table)} INCLUDING ALL EXCLUDING INDEXES)"
                   f"{partitioning}")
    if before_copy:
        before_copy(building)
    columns = ", ".join(_quote(name) for name in _columns(cursor, table))
    cursor.execute(f"INSERT INTO {_quote(building)} ({columns}) SELECT {columns} FROM {_quote(table)}")
    for name in identity:
        cursor.execute(f"SELECT setval(pg_get_serial_sequence(%s, %s), "
                       f"coalesce((SELECT max({_quote(name)}) FROM {_quote(building)}), 0) + 1, false)",
                       [building, name])
    cursor.execute(f"DROP TABLE {_quote(table)}")
    cursor.execute(f"ALTER TABLE {_quote(building)} RENAME TO {_quote(table)}")
    for name in identity:
        cursor.execute("SELECT pg_get_serial_sequence(%s, %s)", [table, name])
        cursor.execute(f"ALTER SEQUENCE {cursor.fetchone()[0]} RENAME TO {_quote(f'{table}_{name}_seq')}")


def _indexes_and_references_add(cursor, table: str, indexes: list[str], foreign_keys: list[tuple[str, str]]) -> None:
    for statement in indexes:
        cursor.execute(statement)
    for name, definition in foreign_keys:
        cursor.execute(f"ALTER TABLE {_quote(table)} ADD CONSTRAINT {_quote(name)} {definition}")


def partition_indexes_name(cursor, table: str) -> None:
    """Name every partition's index after the table's index it belongs to and the partition's month
    (`event_render_recent_p2026_12`, `reports_messageevent_pkey_pdefault`): PostgreSQL would name them after
    their columns, cut at 63 bytes, and plans would be hard to read."""
    cursor.execute(
        "SELECT child.relname, parent.relname, part.relname FROM pg_inherits h "
        "JOIN pg_class child ON child.oid = h.inhrelid JOIN pg_class parent ON parent.oid = h.inhparent "
        "JOIN pg_index i ON i.indexrelid = child.oid JOIN pg_class part ON part.oid = i.indrelid "
        "JOIN pg_inherits tables ON tables.inhrelid = part.oid AND tables.inhparent = %s::regclass "
        "WHERE parent.relkind = 'I'", [table])
    for child, parent, partition in cursor.fetchall():
        wanted = f"{parent}_{partition.removeprefix(table + '_')}"[:63]
        if child != wanted:
            cursor.execute(f"ALTER INDEX {_quote(child)} RENAME TO {_quote(wanted)}")


def _key_columns(columns: list[str], column: str) -> str:
    return ", ".join(_quote(name) for name in [*columns, *([] if column in columns else [column])])


def _longest_retention_days(cursor) -> int:
    cursor.execute("SELECT max(retention_days) FROM apikeys_project")
    return cursor.fetchone()[0] or 0


# Upkeep (the worker) ------------------------------------------------------------------------------------

@dataclass
class UpkeepResult:
    created: list[str]
    rows_moved: int = 0


def partitions_upkeep(*, longest_retention_days: int, at: datetime | None = None) -> UpkeepResult:
    """Create every registered table's missing months of `months_kept`, each in its own transaction."""
    result = UpkeepResult(created=[])
    if not supported():
        return result
    at = at or datetime.now(UTC)
    for partitioned in registered():
        with connection.cursor() as cursor:
            existing = set(partitions_of(cursor, partitioned.table))
        for month in months_kept(at=at, longest_retention_days=longest_retention_days):
            name = partition_name(partitioned.table, month)
            if name not in existing:
                result.rows_moved += _month_create(partitioned, month)
                result.created.append(name)
    return result


@contextmanager
def _giving_way():
    """A transaction for DDL on partitions whose lock waits end after LOCK_TIMEOUT_MS (see there) until
    `_lock_waits_bounded(cursor, False)`."""
    with transaction.atomic(), connection.cursor() as cursor:
        _lock_waits_bounded(cursor, True)
        yield cursor


def _lock_waits_bounded(cursor, bounded: bool) -> None:
    cursor.execute("SELECT set_config('lock_timeout', %s, true)", [f"{LOCK_TIMEOUT_MS}ms" if bounded else "0"])


def _lock_not_available(exc: OperationalError) -> bool:
    return getattr(exc.__cause__, "sqlstate", None) == LOCK_NOT_AVAILABLE


def _until_locked(work: Callable[[], object], what: str):
    """`work()`, tried again after a pause while it gave way to a lock holder; the last refusal is raised (the
    periodic job logs it and its next run tries again; rows meanwhile land in the default partition)."""
    for attempt in range(1, LOCKED_ATTEMPTS + 1):
        try:
            return work()
        except OperationalError as exc:
            if not _lock_not_available(exc) or attempt == LOCKED_ATTEMPTS:
                raise
            logger.info("partition change gave way to a lock holder", extra={"partition": what, "attempt": attempt})
            time.sleep(LOCKED_PAUSE_SECONDS * attempt)


def _month_create(partitioned: PartitionedTable, month: date) -> int:
    """Add one month's partition; rows the default partition holds for it move into it first."""
    return _until_locked(lambda: _month_create_once(partitioned, month),
                         partition_name(partitioned.table, month))


def _month_create_once(partitioned: PartitionedTable, month: date) -> int:
    table, default = partitioned.table, default_partition_name(partitioned.table)
    name = partition_name(table, month)
    with _giving_way() as cursor:
        column_type = _column_type(cursor, table, partitioned.column)
        bounds = _bounds(month, column_type)
        # The parent's lock makes concurrent upkeeps take turns; writers wait for the few statements here.
        cursor.execute(f"LOCK TABLE {_quote(table)} IN SHARE ROW EXCLUSIVE MODE")
        if name in partitions_of(cursor, table):
            return 0
        start, end = _bound(month, column_type), _bound(next_month(month), column_type)
        column = _quote(partitioned.column)
        cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {_quote(default)} WHERE {column} >= {start} "
                       f"AND {column} < {end})")
        known_partitions_forget()
        if not cursor.fetchone()[0]:
            cursor.execute(f"CREATE TABLE {_quote(name)} PARTITION OF {_quote(table)} FOR VALUES {bounds}")
            partition_indexes_name(cursor, table)
            return 0
        columns = ", ".join(_quote(c) for c in _columns(cursor, table))
        cursor.execute(f"CREATE TABLE {_quote(name)} (LIKE {_quote(table)} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
        cursor.execute(f"WITH moved AS (DELETE FROM {_quote(default)} WHERE {column} >= {start} AND {column} < {end} "
                       f"RETURNING {columns}) INSERT INTO {_quote(name)} ({columns}) SELECT {columns} FROM moved")
        moved = cursor.rowcount
        cursor.execute(f"ALTER TABLE {_quote(table)} ATTACH PARTITION {_quote(name)} FOR VALUES {bounds}")
        partition_indexes_name(cursor, table)
        return moved


# Dropping what retention let go ---------------------------------------------------------------------------

@dataclass
class DropResult:
    dropped: list[str]
    seconds: float = 0.0


def expired_partitions(cursor, partitioned: PartitionedTable, *, cutoff: datetime) -> list[str]:
    """The table's monthly partitions whose every row's data lies before `cutoff`."""
    months = ((name, _month_of_partition(name)) for name in partitions_of(cursor, partitioned.table))
    return [name for name, month in months if month is not None and _month_end(month) + partitioned.reach <= cutoff]


def expired_partitions_drop(*, cutoff: datetime) -> DropResult:
    """Drop every registered table's months wholly before `cutoff`, one transaction per partition, each
    after its table's `before_drop`."""
    result = DropResult(dropped=[])
    if not supported():
        return result
    started = time.perf_counter()
    for partitioned in registered():
        with connection.cursor() as cursor:
            names = expired_partitions(cursor, partitioned, cutoff=cutoff)
        for name in names:
            if _until_locked(lambda table=partitioned, name=name: _partition_drop(table, name), name):
                result.dropped.append(name)
    result.seconds = time.perf_counter() - started
    return result


def _partition_drop(partitioned: PartitionedTable, name: str) -> bool:
    """Drop one partition after its table's `before_drop`; False when another purge dropped it first."""
    with _giving_way() as cursor:
        # Purges running at once (two workers) take turns, waiting as long as it takes (no request takes this
        # lock); a month the other one dropped is skipped.
        _lock_waits_bounded(cursor, False)
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [DROP_LOCK])
        cursor.execute("SELECT to_regclass(%s)", [name])
        if cursor.fetchone()[0] is None:
            return False
        # No write reaches the partition while what it added elsewhere is settled (a late backfill).
        _lock_waits_bounded(cursor, True)
        cursor.execute(f"LOCK TABLE {_quote(name)} IN SHARE MODE")
        if partitioned.before_drop:  # row locks on counters and keys, held by requests for a moment: waited for
            _lock_waits_bounded(cursor, False)
            partitioned.before_drop(name)
        # The partition's exclusive lock: while it waits for a reader, every later request naming the table
        # would queue behind it (PostgreSQL grants locks in order), so it gives way and is tried again.
        _lock_waits_bounded(cursor, True)
        cursor.execute(f"DROP TABLE {_quote(name)}")
        known_partitions_forget()
    return True
