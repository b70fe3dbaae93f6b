"""Query parameters of GET /v1/reports/engagement, parsed and validated by plain functions.

Each parameter has one parser returning its value or raising ValueError with the reason the
422 names; errors come in the order of `REPORT_PARAMETERS` (from, to, group_by, channel,
identity, traffic, unique). A parameter given twice counts by its last value; an empty one is absent.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime

from engagement_platform.errors import ValidationFailed
from engagement_platform.traffic import TrafficFilter
from reports.selectors import GroupBy, ReportFilters, UniqueMode
from reports.validation import email_domain, is_valid_email, normalize_domain, parse_rfc3339

IDENTITY_MAX_LENGTH = 254
GROUP_BY_REASON = "Must be one of " + ", ".join(GroupBy.values) + "."
CHANNEL_REASON = "Must be a UUID."
IDENTITY_REASON = "Must be an email address or a domain, e.g. example.com."
TRAFFIC_REASON = "Must be one of " + ", ".join(TrafficFilter.values) + "."
UNIQUE_REASON = "Must be one of " + ", ".join(UniqueMode.values) + "."


def parse_group_by(value: str) -> str:
    if value not in GroupBy.values:
        raise ValueError(GROUP_BY_REASON)
    return value


def parse_channel(value: str) -> uuid.UUID | None:
    value = value.strip()
    if not value:
        return None
    try:
        return uuid.UUID(hex=value)
    except ValueError:
        raise ValueError(CHANNEL_REASON) from None


def parse_traffic(value: str) -> str:
    if value not in TrafficFilter.values:
        raise ValueError(TRAFFIC_REASON)
    return value


def parse_unique(value: str) -> str:
    if value not in UniqueMode.values:
        raise ValueError(UNIQUE_REASON)
    return value


def parse_identity(value: str) -> str | None:
    """A sending identity: an email address (only its domain counts) or a bare domain, lowercased."""
    value = value.strip()
    if not value:
        return None
    domain = (email_domain(value) if is_valid_email(value) else None) if "@" in value else normalize_domain(value)
    if domain is None or len(domain) > IDENTITY_MAX_LENGTH:
        raise ValueError(IDENTITY_REASON)
    return domain


PARSERS = {
    "from": parse_rfc3339,
    "to": parse_rfc3339,
    "group_by": parse_group_by,
    "channel": parse_channel,
    "identity": parse_identity,
    "traffic": parse_traffic,
    "unique": parse_unique,
}


@dataclass(frozen=True)
class ReportQuery:
    start: datetime | None
    end: datetime | None
    group_by: str
    filters: ReportFilters


def parse_report_query(query_params) -> ReportQuery:
    """The parsed query, or ValidationFailed with one error per bad parameter."""
    values, errors = {}, {}
    for name, parse in PARSERS.items():
        raw = query_params.get(name)
        if raw is None or raw == "":
            values[name] = None
            continue
        try:
            values[name] = parse(raw)
        except ValueError as exc:
            errors[name] = [str(exc)]
    if errors:
        raise ValidationFailed(field_errors=errors)
    return ReportQuery(
        start=values["from"],
        end=values["to"],
        group_by=values["group_by"] or GroupBy.DAY,
        filters=ReportFilters(channel_id=values["channel"], domain=values["identity"],
                              traffic=values["traffic"] or TrafficFilter.ALL,
                              unique=values["unique"] or UniqueMode.DAILY),
    )
