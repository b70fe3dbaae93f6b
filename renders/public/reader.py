"""The share page's viewer: the first-party viewer cookie, a `requireEmail` share's answered address, and the
reader's activity reports (contract 7.2, 7.3). Parsing only; the visits' rules are in renders/visits.py."""

import json
import re
import secrets
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.core.signing import BadSignature
from django.core.validators import validate_email

from engagement_platform.ids import parse_uuid

VIEWER_COOKIE = "ep_viewer"
VIEWER_COOKIE_PATH = "/s/"
VIEWER_COOKIE_MAX_AGE = 365 * 24 * 3600
_VIEWER_SHAPE = re.compile(r"^[A-Za-z0-9_-]{22,64}$")
EMAIL_COOKIE = "ep_email"
EMAIL_MAX_LENGTH = 254
ACTIVITY_MAX_BYTES = 64 * 1024
ACTIVITY_MAX_ENTRIES = 1000
REPORT_MS_MAX = 24 * 3600 * 1000  # one entry's time is taken up to a day (the visit's cap then applies)
ACTIVITY_CONTENT_TYPES = ("application/json", "text/plain")
ACTIVITY_SHAPE = 'Expected {"visit": "<visit id>", "pages": [{"page": <n>, "ms": <milliseconds>}, ...]}.'


@dataclass(frozen=True)
class Viewer:
    value: str
    is_new: bool


def viewer_of(request) -> Viewer:
    """The viewer named by the request's cookie, or a new one (random, 128 bits) when it has none or a bad one."""
    value = request.COOKIES.get(VIEWER_COOKIE, "")
    if _VIEWER_SHAPE.match(value):
        return Viewer(value, is_new=False)
    return Viewer(secrets.token_urlsafe(16), is_new=True)


def keep_viewer(response, request, viewer: Viewer) -> None:
    """Set (or refresh) the viewer cookie: first-party, HttpOnly, SameSite=Lax, Secure over HTTPS."""
    response.set_cookie(VIEWER_COOKIE, viewer.value, max_age=VIEWER_COOKIE_MAX_AGE, path=VIEWER_COOKIE_PATH,
                        httponly=True, samesite="Lax", secure=request.is_secure())


def _email_salt(share) -> str:
    return f"share-email:{share.pk}"


def answered_email(request, share) -> str | None:
    """The address this viewer gave the share's email form (a signed cookie of that share's path), if any."""
    try:
        value = request.get_signed_cookie(EMAIL_COOKIE, default=None, salt=_email_salt(share))
    except BadSignature:
        return None
    return value or None


def keep_email_answer(response, request, share, email: str) -> None:
    response.set_signed_cookie(EMAIL_COOKIE, email, salt=_email_salt(share), max_age=VIEWER_COOKIE_MAX_AGE,
                               path=f"/s/{share.token}", httponly=True, samesite="Lax", secure=request.is_secure())


def viewer_email_of(request, share) -> str:
    """Who reads: an emailed share's recipient, else the address given to the share's form, else nobody ("")."""
    return share.recipient or answered_email(request, share) or ""


def email_answer_problem(value: str) -> str | None:
    if not value:
        return "Enter your email address."
    if len(value) > EMAIL_MAX_LENGTH:
        return f"An email address has at most {EMAIL_MAX_LENGTH} characters."
    try:
        validate_email(value)
    except ValidationError:
        return "Enter a valid email address, like name@example.com."
    return None


@dataclass(frozen=True)
class ActivityReport:
    visit_id: object  # a UUID, or None for a visit id that cannot be one (answered as an unknown visit)
    pages: dict[int, int]


@dataclass(frozen=True)
class ActivityProblem:
    status: int
    message: str


def _is_int(value) -> bool:
    return type(value) is int


def parse_activity(request, *, page_count: int) -> ActivityReport | ActivityProblem:
    """A reading report: JSON (as application/json or text/plain, what sendBeacon sends for a string) of the
    shape ACTIVITY_SHAPE, pages within 1..page_count, ms >= 0; repeated pages are added up."""
    content_type = request.META.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
    if content_type not in ACTIVITY_CONTENT_TYPES:
        return ActivityProblem(400, "Send the report as application/json or text/plain.")
    declared = request.META.get("CONTENT_LENGTH") or "0"
    if not (declared.isascii() and declared.isdigit()) or int(declared) > ACTIVITY_MAX_BYTES:
        return ActivityProblem(413 if declared.isdigit() else 400,
                               f"A report is at most {ACTIVITY_MAX_BYTES} bytes.")
    try:
        body = json.loads(request.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return ActivityProblem(400, "The body is not JSON. " + ACTIVITY_SHAPE)
    if type(body) is not dict or set(body) != {"visit", "pages"} or type(body["visit"]) is not str \
            or type(body["pages"]) is not list or len(body["pages"]) > ACTIVITY_MAX_ENTRIES:
        return ActivityProblem(400, ACTIVITY_SHAPE)
    pages: dict[int, int] = {}
    for entry in body["pages"]:
        if type(entry) is not dict or set(entry) != {"page", "ms"} or not _is_int(entry["page"]) \
                or not _is_int(entry["ms"]):
            return ActivityProblem(400, ACTIVITY_SHAPE)
        if not 1 <= entry["page"] <= page_count:
            return ActivityProblem(400, f"Page {entry['page']} is out of range: the document has {page_count}.")
        if entry["ms"] < 0:
            return ActivityProblem(400, "`ms` must not be negative.")
        pages[entry["page"]] = min(REPORT_MS_MAX, pages.get(entry["page"], 0) + entry["ms"])
    return ActivityReport(visit_id=parse_uuid(body["visit"]), pages=pages)
