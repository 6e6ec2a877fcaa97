"""Accord settings, read from the environment (see docs/configuration.md)."""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent
VAR_DIR = Path(os.environ.get("ACCORD_VAR_DIR", Path.cwd() / "var")).resolve()


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _secret_key() -> str:
    """SECRET_KEY from the environment, else a key generated once into var/ for local use."""
    key = os.environ.get("SECRET_KEY")
    if key:
        return key
    path = VAR_DIR / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(50)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key)
        return key


DEMO = _env_bool("ACCORD_DEMO", False)
DEBUG = _env_bool("DEBUG", False)
SECRET_KEY = _secret_key()
ALLOWED_HOSTS = [h.strip() for h in os.environ.get("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",") if h]
CSRF_FAILURE_VIEW = "accord.lib.middleware.csrf_failure"
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o]

# Secure defaults everywhere but the local demo and tests over plain HTTP.
_HTTPS = _env_bool("ACCORD_HTTPS", not (DEBUG or DEMO))
SESSION_COOKIE_SECURE = _HTTPS
CSRF_COOKIE_SECURE = _HTTPS
SECURE_SSL_REDIRECT = _env_bool("ACCORD_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = 31536000 if _HTTPS else 0
# Only when every subdomain is served over HTTPS too (README, Production).
SECURE_HSTS_INCLUDE_SUBDOMAINS = _env_bool("ACCORD_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = _env_bool("ACCORD_HSTS_PRELOAD", False)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
if _env_bool("ACCORD_BEHIND_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Proxies (CIDRs) whose X-Forwarded-For is believed when finding a client's address (accord/lib/net.py): the
# sign-in throttle and the public form's limit count per real client, not per proxy.
ACCORD_TRUSTED_PROXIES = [c.strip() for c in os.environ.get("ACCORD_TRUSTED_PROXIES", "").split(",") if c.strip()]
# Staff API tokens live this many days unless created with another (accord/access/tokens.py).
ACCORD_TOKEN_DAYS = int(os.environ.get("ACCORD_TOKEN_DAYS", 90))
# Failed sign-ins or API tokens per account, and per address, within the window before 429 (accord/access).
ACCORD_SIGNIN_ACCOUNT_FAILURES = int(os.environ.get("ACCORD_SIGNIN_ACCOUNT_FAILURES", 5))
ACCORD_SIGNIN_ADDRESS_FAILURES = int(os.environ.get("ACCORD_SIGNIN_ADDRESS_FAILURES", 20))
ACCORD_SIGNIN_WINDOW = int(os.environ.get("ACCORD_SIGNIN_WINDOW", 900))
ACCORD_PORTAL_IDLE = float(os.environ.get("ACCORD_PORTAL_IDLE", 2 * 3600))  # seconds: a portal session ends after
ACCORD_PORTAL_MAX_AGE = float(os.environ.get("ACCORD_PORTAL_MAX_AGE", 12 * 3600))  # ... and after sign-in
ACCORD_PORTAL_MAX_ATTACHMENT = int(os.environ.get("ACCORD_PORTAL_MAX_ATTACHMENT", 10 * 1024 * 1024))

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "channels",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "accord.ops",
    "accord.access",
    "accord.customers",
    "accord.agreements",
    "accord.catalog",
    "accord.gateway",
    "accord.governance",
    "accord.lab",
    "accord.desk",
    "accord.reports",
    "accord.billing",
    "accord.chat",
    "accord.haproxy",
    "accord.insight",
    "accord.outreach",
    "accord.portal",
    "accord.privacy",
    "accord.web",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "accord.lib.middleware.ApiPayloadLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "accord.urls"

# The kinds of object a manifest holds (`accord apply` / `accord export`), each declared by the app that owns it,
# in the order they are exported; a kind comes after the kinds it refers to (accord.lib.manifest).
ACCORD_MANIFEST_KINDS = [
    "accord.agreements.manifest.CalendarKind",
    "accord.customers.manifest.TierKind",
    "accord.catalog.manifest.ServiceKind",
    "accord.catalog.manifest.PartnerKind",
    "accord.agreements.manifest.AgreementKind",
    "accord.governance.manifest.PolicyKind",
    "accord.insight.manifest.HealthKind",
    "accord.billing.manifest.MeterKind",
    "accord.billing.manifest.PlanKind",
]
# Checks across kinds by apps above them: each f(check) may add errors or warnings (accord/lib/manifest/engine.py).
ACCORD_MANIFEST_CHECKS = ["accord.reports.manifest.partner_promises"]
# `accord import SUBJECT FILE.csv`: each app registers its importers (accord/lib/csvio.py).
ACCORD_CSV_IMPORTERS = {
    "accounts": "accord.customers.csvio.import_accounts",
    "contacts": "accord.customers.csvio.import_contacts",
    "orders": "accord.insight.orders.import_orders",
}
WSGI_APPLICATION = "accord.wsgi.application"
# HTTP and the live chat's WebSockets (docs/chat.md): `accord serve` runs this with uvicorn.
ASGI_APPLICATION = "accord.asgi.application"
# The channel layer carries chat messages between connections: in this process by default (one server process),
# on Redis when ACCORD_REDIS_URL is set (several processes or hosts; `pip install accord[production]`).
CHANNEL_LAYERS = (
    {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                 "CONFIG": {"hosts": [os.environ["ACCORD_REDIS_URL"]]}}}
    if os.environ.get("ACCORD_REDIS_URL") else {"default": {"BACKEND": "accord.chat.layers.InMemoryChannelLayer"}}
)
# The host site signs a known visitor's id with this key (HMAC-SHA256 of "id:unix time"); empty: no identities.
ACCORD_CHAT_SECRET = os.environ.get("ACCORD_CHAT_SECRET", "")
# Origins (scheme://host[:port]) whose pages may embed the chat widget; this server's own origin always may.
# The agreement a guest's chat is under (its `chat` objectives set the clocks), and the calendar of the chat's
# hours for guests (a known visitor's agreement's calendar applies to them); empty: none, and always staffed.
ACCORD_CHAT_AGREEMENT = os.environ.get("ACCORD_CHAT_AGREEMENT", "")
ACCORD_CHAT_CALENDAR = os.environ.get("ACCORD_CHAT_CALENDAR", "")
ACCORD_CHAT_ORIGINS = [o.strip().rstrip("/") for o in os.environ.get("ACCORD_CHAT_ORIGINS", "").split(",") if o.strip()]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # Django's admin with Accord's branding and accessibility fixes (accord/web/admin_templates/admin/).
        "DIRS": [BASE_DIR / "web" / "admin_templates",
                 # the browsable API's page, our own accessible one (accord/api/templates/rest_framework/api.html)
                 BASE_DIR / "api" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accord.ops.context_processors.processes",
            ],
        },
    },
]

_default_db = f"sqlite:///{VAR_DIR / 'accord.sqlite3'}"
DATABASES = {"default": dj_database_url.parse(os.environ.get("DATABASE_URL", _default_db), conn_max_age=60)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    if DATABASES["default"]["NAME"] != ":memory:":
        Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # WAL lets the web process read while a worker writes; IMMEDIATE avoids upgrade deadlocks.
    # Each command opens its connection per request or task; `accord serve` (one thread runs every request's and
    # chat socket's database work) keeps its open: ACCORD_SQLITE_CONN_MAX_AGE, which it sets to 60.
    DATABASES["default"]["CONN_MAX_AGE"] = int(os.environ.get("ACCORD_SQLITE_CONN_MAX_AGE", "0"))
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    if os.environ.get("ACCORD_SQLITE_MAX_PAGES"):  # the full-disk tests: a file that cannot grow past N pages
        DATABASES["default"]["OPTIONS"]["init_command"] += f" PRAGMA max_page_count={int(os.environ['ACCORD_SQLITE_MAX_PAGES'])};"
if os.environ.get("ACCORD_TEST_DB_NAME"):
    DATABASES["default"]["TEST"] = {"NAME": os.environ["ACCORD_TEST_DB_NAME"]}
elif DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory, so tests can start real `accord` subprocesses (workers, gateway) on the same data.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "web:dashboard"
LOGOUT_REDIRECT_URL = "login"

# Request bodies larger than this get 413 on the API (and Django's own check elsewhere).
DATA_UPLOAD_MAX_MEMORY_SIZE = int(os.environ.get("ACCORD_MAX_BODY_BYTES", 1024 * 1024))

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accord.access.auth.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["accord.lib.permissions.RolePermissions"],  # roles: accord/access/roles.py
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "accord.lib.api.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "accord.lib.schema.AutoSchema",
    "EXCEPTION_HANDLER": "accord.lib.api.exception_handler",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Accord API",
    "DESCRIPTION": "Customers, tiers, agreements and the service catalog of Accord.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI and Redoc assets ship in drf-spectacular-sidecar: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # The system's fonts: Redoc's own (Montserrat, Roboto) would come from Google.
    "REDOC_UI_SETTINGS": {"theme": {"typography": {"fontFamily": "system-ui, sans-serif",
                                                   "headings": {"fontFamily": "system-ui, sans-serif"}}}},
    "ENUM_NAME_OVERRIDES": {
        "AccountKindEnum": "accord.customers.models.Account.Kind",
        "ObjectiveKindEnum": "accord.agreements.models.Objective.Kind",
        "TicketStatusEnum": "accord.desk.models.Ticket.Status",
    },
}

# Outgoing mail (replies, acknowledgements, alerts).
EMAIL_BACKEND = os.environ.get("ACCORD_EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = os.environ.get("ACCORD_SMTP_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("ACCORD_SMTP_PORT", 25))
EMAIL_HOST_USER = os.environ.get("ACCORD_SMTP_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("ACCORD_SMTP_PASSWORD", "")
EMAIL_USE_TLS = _env_bool("ACCORD_SMTP_STARTTLS", False)
EMAIL_USE_SSL = _env_bool("ACCORD_SMTP_SSL", False)
EMAIL_TIMEOUT = 20
EMAIL_FILE_PATH = str(VAR_DIR / "sent-mail")
# Where people reach this Accord from outside: the links mailed for consent and unsubscribing start with it.
ACCORD_PUBLIC_URL = os.environ.get("ACCORD_PUBLIC_URL", "http://127.0.0.1:8000")
# A mailbox for List-Unsubscribe's mailto: form (RFC 2369), e.g. unsubscribe@example.com; empty: the URL only.
ACCORD_UNSUBSCRIBE_MAILTO = os.environ.get("ACCORD_UNSUBSCRIBE_MAILTO", "")  # used by the file backend the demo selects
# Campaigns (docs/outreach.md): DKIM key, selector and domain; the envelope sender bounces go to; the sender's
# claim lease and attempts; soft bounces before an address is suppressed.
ACCORD_DKIM_KEY_FILE = os.environ.get("ACCORD_DKIM_KEY_FILE", "")
ACCORD_DKIM_SELECTOR = os.environ.get("ACCORD_DKIM_SELECTOR", "accord")
ACCORD_DKIM_DOMAIN = os.environ.get("ACCORD_DKIM_DOMAIN", "")
ACCORD_BOUNCE_ADDRESS = os.environ.get("ACCORD_BOUNCE_ADDRESS", "")
ACCORD_CAMPAIGN_LEASE = float(os.environ.get("ACCORD_CAMPAIGN_LEASE", 300))
ACCORD_CAMPAIGN_ATTEMPTS = int(os.environ.get("ACCORD_CAMPAIGN_ATTEMPTS", 5))
ACCORD_SOFT_BOUNCE_LIMIT = int(os.environ.get("ACCORD_SOFT_BOUNCE_LIMIT", 3))
DEFAULT_FROM_EMAIL = os.environ.get("ACCORD_MAIL_FROM", "support@accord.localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# Support clocks warn when this share of the target has passed.
ACCORD_SLA_WARNING_SHARE = float(os.environ.get("ACCORD_SLA_WARNING_SHARE", 0.75))

# The currency of amounts that carry none of their own: accounts' revenue and cost to serve, commitments, tier
# thresholds, service costs (an agreement has its own currency); insight reports orders in it (order lines in
# other currencies are converted by its rate table, never summed).
ACCORD_CURRENCY = os.environ.get("ACCORD_CURRENCY", "EUR")
if not re.fullmatch(r"[A-Z]{3}", ACCORD_CURRENCY):
    raise ImproperlyConfigured(f"ACCORD_CURRENCY={ACCORD_CURRENCY!r} is not a currency code like EUR")


def _positive_ms(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not (0 < value < float("inf")):
        raise ImproperlyConfigured(f"{name}={raw!r} is not a positive number of milliseconds")
    return value


# A request its client abandoned (499) after this many milliseconds without an answer counts as bad for an
# availability or error-rate objective that has no latency objective of its own scope to take the threshold from;
# abandoned sooner, it is not counted (docs/governance.md, "Service-level indicators"). The default is the
# gateway's default upstream timeout (accord.gateway.limits.Limits), after which the gateway answers 504 itself.
ACCORD_SLI_ABANDON_MS = _positive_ms("ACCORD_SLI_ABANDON_MS", 30_000.0)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "WARNING")},
}

# Governance alerts (error-budget burn rates) go to these addresses and signed webhooks.
ACCORD_ALERT_EMAILS = [e.strip() for e in os.environ.get("ACCORD_ALERT_EMAILS", "").split(",") if e.strip()]
ACCORD_ALERT_WEBHOOKS = json.loads(os.environ.get("ACCORD_ALERT_WEBHOOKS", "[]"))  # [{"url": ..., "secret": ...}]
# Billing's forecast alerts (`accord forecast`, docs/billing.md) go to each account's manager (its owner) and to
# these billing addresses, and to these signed webhooks.
ACCORD_BILLING_ALERT_EMAILS = [e.strip() for e in os.environ.get("ACCORD_BILLING_ALERT_EMAILS", "").split(",")
                               if e.strip()]
ACCORD_BILLING_ALERT_WEBHOOKS = json.loads(os.environ.get("ACCORD_BILLING_ALERT_WEBHOOKS", "[]"))
# Background processes that must be running (kinds: worker, governor, gateway, mail-poller, mail-sender); the
# staff pages show a banner, and `accord doctor` exits 1, when one has no fresh heartbeat. A kind that has run in
# the last day is expected anyway until it stops cleanly.
ACCORD_EXPECTED_PROCESSES = [k.strip() for k in os.environ.get("ACCORD_EXPECTED_PROCESSES", "").split(",") if k.strip()]
# The desk's outbox (accord/desk/outbox.py): seconds of backoff (doubling, capped, jittered), how long a send
# may take before another sender takes it back, when to give up; try each mail right after its commit or leave
# all sending to `accord desk send-mail --loop N`.
ACCORD_OUTBOX_BACKOFF = float(os.environ.get("ACCORD_OUTBOX_BACKOFF", 30))
ACCORD_OUTBOX_BACKOFF_MAX = float(os.environ.get("ACCORD_OUTBOX_BACKOFF_MAX", 3600))
ACCORD_OUTBOX_LEASE = float(os.environ.get("ACCORD_OUTBOX_LEASE", 300))
ACCORD_OUTBOX_GIVE_UP = float(os.environ.get("ACCORD_OUTBOX_GIVE_UP", 5 * 86400))
ACCORD_OUTBOX_SEND_ON_COMMIT = _env_bool("ACCORD_OUTBOX_SEND_ON_COMMIT", True)
