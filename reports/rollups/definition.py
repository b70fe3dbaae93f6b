"""The rollup rule, stated once: the grains, the counted figures, and what each event adds.

Every writer and reader of the rollups is derived from this module: ingestion on both databases,
the deferred backfill recount, `rebuild_rollups`, the first-touch ledger and the report read
(`reports.rollups.sql` generates their SQL from these tuples, on both databases). Adding a figure,
a grain or a dimension is a change here, plus the column that stores it in `reports.models` and
its migration.

- An event's *facts* are its UTC day, its type, its traffic class (contract section 6), its message's
  recipient (lowercased) and one value per dimension (the message's channel key and sending domain).
- A *grain* splits by some of the dimensions; the others read "" in its rows. Each event feeds one
  rollup row of every grain per UTC day, so each report filter reads exactly one row per day.
- A *figure* is a rollup column: either the number of events of its types, or the number of
  distinct recipients with an event of its types on the day within the grain key; a figure may
  count one traffic class only. Distinct figures are kept exact at ingestion by the first-touch
  ledger: one row per day, event type, grain key and recipient, holding the recipient's last touch
  of the type (`last_at`) and, per traffic class, their last touch of that class (`last_human_at`,
  `last_machine_at`: NULL until they have one). The write that creates the row adds one to the
  all-traffic figure; the write that first sets a class's time adds one to that class's figure (the
  upsert notes it in the row's `new_<class>` column, which its RETURNING reads back).
- The figures of the classified event types (opens and clicks) are kept for all traffic and per
  class (`opens_human`, `unique_opens_machine`, ...): a report for one class reads those columns
  (`column_for_traffic`). A recipient counts in a class's distinct figure when they had at least one
  event of that class; the all-traffic distinct figure counts them once whatever their classes.
- Distinct figures are also kept exact per *period* (ISO week, month) for `unique=exact`: a period
  ledger (one row per period, event type, grain key and recipient, with the recipient's last touches in
  the period, per class too) and its counts per period, kept at ingestion like the daily ones. A bucket's part from a
  moment to its end counts the ledger rows touched at or after that moment.
- A window edge inside a UTC day is read from data kept for it at ingestion, never from the day's
  raw events: the counted figures are also kept per *slice* of the day (`SLICE_MINUTES`), and each
  ledger row keeps the recipient's last touch time (`last_at`), so the distinct figures of the part
  of a day from a moment to its end are the ledger rows touched at or after that moment. Only the
  raw events of one partial slice are read.
"""

from dataclasses import dataclass

from engagement_platform.traffic import Traffic, TrafficFilter
from reports.models import MessageEventType, PeriodGrain, RollupGrain


@dataclass(frozen=True)
class Dimension:
    """A value every event has (through its message) that some grains split by."""

    column: str  # the rollup and first-touch column holding it ("" in grains that do not split by it)
    source: str  # where an event's value is stored: "message.<field>" or "channel.<field>" (its message's channel)


@dataclass(frozen=True)
class Grain:
    name: str
    splits: tuple[Dimension, ...]


@dataclass(frozen=True)
class Figure:
    """A rollup column and what adds to it."""

    column: str
    event_types: tuple[str, ...]
    distinct: bool = False  # False: one per event; True: one per distinct recipient per UTC day and grain key
    traffic: str = ""  # "": every event of its types; else only the events of this traffic class

    @property
    def touch_type(self) -> str:
        """The ledger rows' `type` of a distinct figure: the event type it counts."""
        return self.event_types[0]

    @property
    def last_column(self) -> str:
        """The ledger column holding a recipient's last touch for this distinct figure (NULL: none)."""
        return last_column(self.traffic)


def last_column(traffic: str) -> str:
    """The ledger column of the last touch of one traffic class ("": of any)."""
    return f"last_{traffic}_at" if traffic else "last_at"


def new_column(traffic: str) -> str:
    """The ledger column that notes whether the latest write gave the row its first touch of `traffic`."""
    return f"new_{traffic}"


CHANNEL = Dimension("channel_key", source="channel.external_id")
DOMAIN = Dimension("domain", source="message.from_domain")
RECIPIENT_SOURCE = "message.recipient"  # whom the distinct figures count (stored lowercased)
DIMENSIONS = (CHANNEL, DOMAIN)

GRAINS = (
    Grain(RollupGrain.ALL.value, ()),
    Grain(RollupGrain.CHANNEL.value, (CHANNEL,)),
    Grain(RollupGrain.DOMAIN.value, (DOMAIN,)),
    Grain(RollupGrain.CHANNEL_DOMAIN.value, (CHANNEL, DOMAIN)),
)

# The event types the traffic rules classify (every other type is human) and the classes they give.
CLASSIFIED_TYPES = (MessageEventType.OPENED.value, MessageEventType.CLICKED.value)
TRAFFIC_CLASSES = (Traffic.HUMAN.value, Traffic.MACHINE.value)

_BASE_FIGURES = (
    Figure("sent", (MessageEventType.SENT.value,)),
    Figure("delivered", (MessageEventType.DELIVERED.value,)),
    Figure("opens", (MessageEventType.OPENED.value,)),
    Figure("clicks", (MessageEventType.CLICKED.value,)),
    Figure("unique_opens", (MessageEventType.OPENED.value,), distinct=True),
    Figure("unique_clicks", (MessageEventType.CLICKED.value,), distinct=True),
)


def _classified(figure: Figure) -> bool:
    return set(figure.event_types) <= set(CLASSIFIED_TYPES)


FIGURES = (
    *_BASE_FIGURES,
    *(Figure(f"{figure.column}_{traffic}", figure.event_types, figure.distinct, traffic)
      for figure in _BASE_FIGURES if _classified(figure) for traffic in TRAFFIC_CLASSES),
)

# The buckets longer than a day whose distinct figures are kept exact too (`unique=exact`).
PERIODS = (PeriodGrain.WEEK.value, PeriodGrain.MONTH.value)

# The counted figures of a UTC day are also kept per slice of this many minutes (a divisor of a day).
SLICE_MINUTES = 5

# Derived names --------------------------------------------------------------------------------

GrainKey = tuple[str, ...]  # (grain, one value per dimension)
DIMENSION_COLUMNS = tuple(dimension.column for dimension in DIMENSIONS)
KEY_COLUMNS = ("grain", *DIMENSION_COLUMNS)  # a rollup row is (project, day, *KEY_COLUMNS)
FIGURE_COLUMNS = tuple(figure.column for figure in FIGURES)
COUNTED = tuple(figure for figure in FIGURES if not figure.distinct)
DISTINCT = tuple(figure for figure in FIGURES if figure.distinct)
# Each distinct figure counts one event type (its ledger rows' `type`) and one class or all of them.
if (any(len(figure.event_types) != 1 for figure in DISTINCT)
        or len({(f.touch_type, f.traffic) for f in DISTINCT}) != len(DISTINCT)):
    raise ValueError("each distinct figure counts one event type, for one traffic class or all (its ledger column)")
SLICES_PER_DAY = 24 * 60 // SLICE_MINUTES
if SLICES_PER_DAY * SLICE_MINUTES != 24 * 60:
    raise ValueError("SLICE_MINUTES must divide a day")
TOUCH_TYPES = tuple(dict.fromkeys(figure.touch_type for figure in DISTINCT))  # the types the ledger records
# The ledger's time columns: the last touch of any class, then one per class; and the class notes.
LAST_COLUMNS = tuple(dict.fromkeys((last_column(""), *(last_column(t) for t in TRAFFIC_CLASSES))))
NEW_COLUMNS = tuple(new_column(traffic) for traffic in TRAFFIC_CLASSES)
DISTINCT_BY_TOUCH = {(figure.touch_type, figure.traffic): figure for figure in DISTINCT}


def column_for_traffic(column: str, traffic: str) -> str:
    """The rollup column holding figure `column` for a report of `traffic` (a `TrafficFilter` value):
    the figure's own for all traffic and for unclassified types (sent and delivered stay as they are)."""
    if traffic == TrafficFilter.ALL:
        return column
    base = next(figure for figure in _BASE_FIGURES if figure.column == column)
    return f"{column}_{traffic}" if _classified(base) else column


def grain_key_for_filters(values: dict[str, str | None]) -> GrainKey:
    """The one rollup key that answers a report filtered on these dimensions (by column; None or "": not)."""
    filtered = {dimension for dimension in DIMENSIONS if values.get(dimension.column)}
    for grain in GRAINS:
        if set(grain.splits) == filtered:
            return (grain.name, *(values[d.column] if d in filtered else "" for d in DIMENSIONS))
    raise LookupError(f"no grain splits by {sorted(d.column for d in filtered)}")
