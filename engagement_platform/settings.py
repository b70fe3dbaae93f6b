"""Settings for the engagement platform. Every deployment value comes from the environment."""

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from engagement_platform.clientip import parse_networks, parse_trusted_proxies
from engagement_platform.db.config import DEFAULT_STARTUP_OPTIONS, database_settings, replica_settings
from engagement_platform.env import get_from_env
from engagement_platform.storage import storages_from_url

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = get_from_env("DEBUG", False, cast=bool)
# The development key is for DEBUG only (its `django-insecure-` prefix makes `check --deploy` flag it,
# security.W009); with DEBUG off the platform refuses to start without a SECRET_KEY of its own.
DEVELOPMENT_SECRET_KEY = "django-insecure-local-development-key-for-debug-only-never-in-production"
SECRET_KEY = get_from_env("SECRET_KEY", DEVELOPMENT_SECRET_KEY if DEBUG else None)
if not DEBUG and (not SECRET_KEY or not SECRET_KEY.strip() or SECRET_KEY == DEVELOPMENT_SECRET_KEY):
    raise ImproperlyConfigured(
        "SECRET_KEY must be set in the environment when DEBUG is off (a long random value, e.g. "
        "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`); the development key is for DEBUG=1 only."
    )
ALLOWED_HOSTS = get_from_env("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "testserver"], cast=list)
CSRF_TRUSTED_ORIGINS = get_from_env("CSRF_TRUSTED_ORIGINS", [], cast=list)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "apikeys",
    "renders",
    "reports",
    "webhooks",
    "retention",
    "demo",
    "django_tasks",
    "django_tasks_db",
]

MIDDLEWARE = [
    "engagement_platform.middleware.RequestIdMiddleware",
    # Before anything reads a body (CSRF reads forms): a chunked body is read to its end or refused with 411.
    "engagement_platform.middleware.ChunkedBodyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "engagement_platform.urls"
WSGI_APPLICATION = "engagement_platform.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database: PostgreSQL in production and CI, SQLite as the embedded local default; every alias built by one
# rule (engagement_platform/db/config.py).
_database = {
    "conn_max_age": get_from_env("DATABASE_CONN_MAX_AGE", 60, cast=int),
    "health_check_idle": get_from_env("DATABASE_HEALTH_CHECK_IDLE", 1.0, cast=float),
    # Server-side parameter binding lets PostgreSQL keep the plan of a statement a connection runs again and
    # again (the hot paths' statements): psycopg prepares a query from its Nth execution on. 0 behind a
    # connection pooler in transaction mode, which cannot carry prepared statements.
    "prepare_threshold": get_from_env("DATABASE_PREPARE_THRESHOLD", 2, cast=int),
    "startup_options": get_from_env("DATABASE_STARTUP_OPTIONS", DEFAULT_STARTUP_OPTIONS),
}
DATABASES = {
    "default": database_settings(
        get_from_env("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        connect_timeout=get_from_env("DATABASE_CONNECT_TIMEOUT", 3, cast=int),
        sqlite_test_name=str(BASE_DIR / f".test-db-{os.getpid()}.sqlite3"), **_database,
    )
}
# A streaming replica for the reads contract section 10 names (the report, the event log, visits, pages,
# exports): `reading_from_replica(project)` in engagement_platform/db/replica.py picks the alias at each
# such read. Only added when set; a short connect timeout, so an unreachable replica costs little before
# the read falls back to the primary.
_replica_url = get_from_env("DATABASE_REPLICA_URL", "")
if _replica_url:
    DATABASES["replica"] = replica_settings(
        _replica_url, primary=DATABASES["default"],
        connect_timeout=get_from_env("DATABASE_REPLICA_CONNECT_TIMEOUT", 1, cast=int), **_database,
    )
# Writes, migrations and every read not routed explicitly go to the primary.
DATABASE_ROUTERS = ["engagement_platform.db.router.PrimaryRouter"]
# Reads of a project within this many seconds of its last write through the platform use the primary.
READ_YOUR_WRITES_SECONDS = get_from_env("READ_YOUR_WRITES_SECONDS", 5.0, cast=float)
# After a failed replica connection or read, reads use the primary for this many seconds (every process:
# the mark is kept in the shared cache) before the replica is tried again.
REPLICA_RETRY_SECONDS = get_from_env("DATABASE_REPLICA_RETRY_SECONDS", 5.0, cast=float)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# The first-touch ledger's index carries the class times on PostgreSQL (INCLUDE); SQLite builds it without
# them, which changes no answer: the check that says so would print on every command of the embedded default.
SILENCED_SYSTEM_CHECKS = ["models.W040"]

# Cache: shared Redis in production (rate limits must be shared by every worker).
_cache_url = get_from_env("CACHE_URL", None) or get_from_env("REDIS_URL", None)
if _cache_url and _cache_url.startswith(("redis://", "rediss://", "unix://")):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": _cache_url,
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
RATE_LIMIT_FAIL_OPEN = get_from_env("RATE_LIMIT_FAIL_OPEN", True, cast=bool)
# Public share routes (page, file, download, print, pixel, tracked link): one budget per share and client IP
# per minute, counted in the shared cache like the API's limit.
PUBLIC_RATE_LIMIT_PER_MINUTE = get_from_env("PUBLIC_RATE_LIMIT_PER_MINUTE", 120, cast=int)
# A viewer's reading of a share is one visit while their activity is less than this many minutes apart.
VISIT_IDLE_MINUTES = get_from_env("VISIT_IDLE_MINUTES", 10, cast=int)
# Whose X-Forwarded-For / X-Real-IP is believed (engagement_platform/clientip.py): `*` every peer, or
# comma-separated addresses / CIDR ranges of the load balancers. Parsed here, once.
TRUSTED_PROXIES = parse_trusted_proxies(get_from_env("TRUSTED_PROXIES", "*"))
# Human and machine traffic (engagement_platform/traffic.py): an email open from these networks is Apple
# Mail Privacy Protection's proxy, not the reader (comma-separated CIDR ranges); a click less than this many
# seconds after its message's `delivered` is a gateway's link scanner.
PRIVACY_PROXY_NETWORKS = parse_networks(get_from_env("PRIVACY_PROXY_NETWORKS", "17.0.0.0/8"),
                                        setting="PRIVACY_PROXY_NETWORKS")
MACHINE_CLICK_SECONDS = get_from_env("MACHINE_CLICK_SECONDS", 10, cast=int)
# Kept response bodies (engagement_platform/bodycache.py) only with a shared cache: a per-process one
# cannot see other processes' writes, so they are off (0) by default there.
_BODY_CACHE_SECONDS = 60 if CACHES["default"]["BACKEND"].endswith("RedisCache") else 0
# Encoded report bodies kept per (project, window, bucket, filters) and dropped by any write to the
# project's report data (`report_bodies` in reports/selectors.py).
REPORT_CACHE_SECONDS = get_from_env("REPORT_CACHE_SECONDS", _BODY_CACHE_SECONDS, cast=int)
# Encoded engagement summaries kept per (render, asking project) and dropped by every write that
# changes the render's summary (`summaries` in renders/selectors.py).
SUMMARY_CACHE_SECONDS = get_from_env("SUMMARY_CACHE_SECONDS", _BODY_CACHE_SECONDS, cast=int)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(get_from_env("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
MEDIA_ROOT = Path(get_from_env("MEDIA_ROOT", str(BASE_DIR / "media")))
MEDIA_URL = "media/"
# Stored files (PDFs, page images): local files under MEDIA_ROOT, or an S3-compatible bucket
# (`s3://bucket[/prefix]?region=...&endpoint_url=...`, engagement_platform/storage.py).
STORAGES = storages_from_url(get_from_env("STORAGE_URL", ""))

# Public base URL used for absolute links in emails; request host is used when unset.
PUBLIC_BASE_URL = get_from_env("PUBLIC_BASE_URL", "")

# Webhooks (contract section 8) and the background worker (`manage.py worker`)
# The task queue: django-tasks' database backend, so SQLite and PostgreSQL both work (forward compatible
# with Django 6's django.tasks); the worker also sweeps due deliveries, so a lost task loses nothing.
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
# Allow `http` and loopback/private/link-local addresses for webhook URLs (development and tests only).
WEBHOOK_ALLOW_PRIVATE_NETWORKS = get_from_env("WEBHOOK_ALLOW_PRIVATE_NETWORKS", False, cast=bool)
# One delivery attempt's whole budget (connect, send, answer), in seconds.
WEBHOOK_TIMEOUT_SECONDS = get_from_env("WEBHOOK_TIMEOUT_SECONDS", 10.0, cast=float)
# Seconds between a failed attempt and the next (then the delivery is `failed`); tests shorten it.
WEBHOOK_RETRY_SCHEDULE = [int(part) for part in get_from_env(
    "WEBHOOK_RETRY_SCHEDULE", ["5", "60", "600", "3600", "21600", "86400"], cast=list)]
# How long a worker holds a delivery it is sending; one that dies meanwhile leaves it to the sweep after that.
# Must exceed WEBHOOK_TIMEOUT_SECONDS.
WEBHOOK_LEASE_SECONDS = get_from_env("WEBHOOK_LEASE_SECONDS", 60.0, cast=float)
# An endpoint whose every delivery failed for this many days is disabled.
WEBHOOK_DISABLE_AFTER_DAYS = get_from_env("WEBHOOK_DISABLE_AFTER_DAYS", 3, cast=int)
# How long a server process keeps a project's subscriptions (other processes see a new endpoint within this).
WEBHOOK_SUBSCRIPTIONS_CACHE_SECONDS = get_from_env("WEBHOOK_SUBSCRIPTIONS_CACHE_SECONDS", 5.0, cast=float)
# How often an idle worker looks for new tasks, in seconds.
WORKER_POLL_SECONDS = get_from_env("WORKER_POLL_SECONDS", 0.1, cast=float)

# Renders
RENDER_MAX_BYTES = get_from_env("RENDER_MAX_BYTES", 25 * 1024 * 1024, cast=int)
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

# Mail
EMAIL_BACKEND = get_from_env("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_FILE_PATH = get_from_env("EMAIL_FILE_PATH", str(BASE_DIR / "var" / "mail"))
EMAIL_HOST = get_from_env("EMAIL_HOST", "localhost")
EMAIL_PORT = get_from_env("EMAIL_PORT", 25, cast=int)
EMAIL_HOST_USER = get_from_env("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = get_from_env("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = get_from_env("EMAIL_USE_TLS", False, cast=bool)
EMAIL_TIMEOUT = get_from_env("EMAIL_TIMEOUT", 10, cast=int)
DEFAULT_FROM_EMAIL = get_from_env("DEFAULT_FROM_EMAIL", "documents@engagement.localhost")

# Security headers (production values come from the environment).
SECURE_SSL_REDIRECT = get_from_env("SECURE_SSL_REDIRECT", False, cast=bool)
SECURE_HSTS_SECONDS = get_from_env("SECURE_HSTS_SECONDS", 0, cast=int)
SECURE_HSTS_INCLUDE_SUBDOMAINS = get_from_env("SECURE_HSTS_INCLUDE_SUBDOMAINS", False, cast=bool)
SECURE_HSTS_PRELOAD = get_from_env("SECURE_HSTS_PRELOAD", False, cast=bool)
SESSION_COOKIE_SECURE = get_from_env("SESSION_COOKIE_SECURE", False, cast=bool)
CSRF_COOKIE_SECURE = get_from_env("CSRF_COOKIE_SECURE", False, cast=bool)
if get_from_env("SECURE_PROXY_SSL_HEADER", False, cast=bool):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"  # the share page sets SAMEORIGIN on the one response it embeds, the PDF

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["apikeys.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["apikeys.permissions.HasRequiredScope"],
    "DEFAULT_THROTTLE_CLASSES": ["apikeys.throttling.ProjectRateLimit"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["engagement_platform.parsers.BoundedJSONParser"],
    "EXCEPTION_HANDLER": "engagement_platform.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Engagement platform API",
    "DESCRIPTION": "Render engagement (documents) and engagement reports (email) from one data model.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_AUTHENTICATION": [],
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Every event type, as the summary's and the event log's events carry it (one enum, its name kept stable).
    "ENUM_NAME_OVERRIDES": {"EventOutEventTypeEnum": "renders.models.EventType",
                            "WebhookEventTypeEnum": "engagement_platform.event_hooks.PublicEventType",
                            "WebhookDeliveryStatusEnum": "webhooks.models.DeliveryStatus"},
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums",
                             "engagement_platform.openapi.document_operations"],
}

LOG_LEVEL = get_from_env("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "engagement_platform.logging.JsonFormatter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "engagement_platform": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        # Django's own request logger names raw paths (share tokens) and would log each server fault a
        # second time: the platform logs every fault itself, once, with the request id and a masked path
        # (engagement_platform.errors.log_unexpected).
        "django.request": {"handlers": [], "level": "CRITICAL", "propagate": False},
        "django.server": {"handlers": [], "level": "CRITICAL", "propagate": False},
    },
}

# API bodies
JSON_MAX_BODY_BYTES = get_from_env("JSON_MAX_BODY_BYTES", 1024 * 1024, cast=int)
PROBLEM_TYPE_BASE = get_from_env("PROBLEM_TYPE_BASE", "https://engagement-platform.dev/problems/")

# Benchmark floor views under /bench/ (bench/floor.py); only the benchmark's own server turns this on.
BENCH_FLOOR_VIEWS = get_from_env("BENCH_FLOOR_VIEWS", False, cast=bool)
