"""Query parameters of GET /v1/reports/engagement, parsed and validated with django-filter."""

from dataclasses import dataclass
from datetime import datetime

import django_filters
from django import forms

from engagement_platform.errors import ValidationFailed
from reports.models import MessageEvent
from reports.selectors import GroupBy, ReportFilters
from reports.validation import email_domain, is_valid_email, normalize_domain, parse_rfc3339

IDENTITY_MAX_LENGTH = 254


class RFC3339Field(forms.Field):
    """An RFC 3339 date-time that carries an offset or `Z`, as an aware UTC datetime."""

    def to_python(self, value):
        if value in self.empty_values:
            return None
        try:
            return parse_rfc3339(value)
        except ValueError as exc:
            raise forms.ValidationError(str(exc), code="invalid") from None


class IdentityField(forms.CharField):
    """A sending identity: an email address (only its domain counts) or a bare domain, lowercased."""

    def to_python(self, value):
        value = super().to_python(value)
        if not value:
            return None
        domain = (email_domain(value) if is_valid_email(value) else None) if "@" in value \
            else normalize_domain(value)
        if domain is None:
            raise forms.ValidationError("Must be an email address or a domain, e.g. example.com.", code="invalid")
        return domain


class RFC3339Filter(django_filters.Filter):
    field_class = RFC3339Field


class IdentityFilter(django_filters.CharFilter):
    field_class = IdentityField


class EngagementReportFilterSet(django_filters.FilterSet):
    """`from`, `to`, `group_by`, `channel`, `identity`; field names are the query parameters."""

    to = RFC3339Filter(field_name="occurred_at", lookup_expr="lt")
    group_by = django_filters.ChoiceFilter(
        choices=GroupBy.choices, method="by_bucket",
        error_messages={"invalid_choice": "Must be one of " + ", ".join(GroupBy.values) + "."},
    )
    channel = django_filters.UUIDFilter(field_name="message__channel__external_id",
                                        error_messages={"invalid": "Must be a UUID."})
    identity = IdentityFilter(field_name="message__from_domain", max_length=IDENTITY_MAX_LENGTH)

    class Meta:
        model = MessageEvent
        fields = []

    @classmethod
    def get_filters(cls):
        # `from` is a Python keyword, so it cannot be declared in the class body.
        return {"from": RFC3339Filter(field_name="occurred_at", lookup_expr="gte"), **super().get_filters()}

    def by_bucket(self, queryset, name, value):
        return queryset  # bucketing is not a row filter


@dataclass(frozen=True)
class ReportQuery:
    start: datetime | None
    end: datetime | None
    group_by: str
    filters: ReportFilters


def parse_report_query(query_params) -> ReportQuery:
    """The parsed query, or ValidationFailed with one error per bad parameter."""
    filterset = EngagementReportFilterSet(data=query_params, queryset=MessageEvent.objects.none())
    form = filterset.form
    if not form.is_valid():
        raise ValidationFailed(field_errors={name: [messages[0]] for name, messages in form.errors.items()})
    data = form.cleaned_data
    return ReportQuery(
        start=data["from"],
        end=data["to"],
        group_by=data["group_by"] or GroupBy.DAY,
        filters=ReportFilters(channel_id=data["channel"], domain=data["identity"]),
    )
