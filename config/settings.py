"""Settings for promptctl, read from environment variables.

Every default is embedded and needs no server: SQLite and a filesystem Celery
broker under ``PROMPTCTL_VAR_DIR``. ``DATABASE_URL`` switches to PostgreSQL and
``CELERY_BROKER_URL`` to Redis. Production secrets have no defaults, and
production is the default: ``DJANGO_DEBUG`` is false unless set, and then a
missing ``DJANGO_SECRET_KEY`` or ``DJANGO_ALLOWED_HOSTS`` stops start-up.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


class _Env(environ.Env):
    """django-environ, with a value that does not parse named in one line instead of a ValueError traceback."""

    def get_value(self, var, cast=None, default=environ.Env.NOTSET, parse_default=False):
        try:
            return super().get_value(var, cast=cast, default=default, parse_default=parse_default)
        except (ValueError, TypeError, OverflowError) as error:
            kind = getattr(cast, "__name__", cast) or "value"
            raise ImproperlyConfigured(
                f"{var}={os.environ.get(var, '')!r} is not a valid {kind} ({error}): fix or unset it."
            ) from None


env = _Env()


def _days(name: str, days: int) -> int:
    """A retention period in whole days: 0 (purge at once) up to 100 years."""
    if not 0 <= days <= 36_500:
        raise ImproperlyConfigured(f"{name}={days} is out of range: give whole days from 0 to 36500.")
    return days


VAR_DIR = Path(env.str("PROMPTCTL_VAR_DIR", default=str(BASE_DIR / "var"))).resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)

# --- Secure defaults ----------------------------------------------------------
# DEBUG is off unless asked for: `make demo`, `python -m demo` and the tests set DJANGO_DEBUG=true
# in their own environment; a developer's shell does too (README). Production needs no flag to be safe.
DEBUG = env.bool("DJANGO_DEBUG", default=False)


def _development_secret_key(path: Path) -> str:
    """A random key kept in the state directory, made on first use: never a constant in the source.

    A constant would be public (it is in the repository), so anyone who can reach
    a development server could forge what Django signs (password-reset tokens,
    signed cookies). The file keeps the key across restarts, and every process
    sharing the state directory (web, worker, manage.py) reads the same one.
    It is written whole under a temporary name and linked into place, so two
    processes starting together agree on one key.
    """
    if not path.exists():
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        temporary.write_text(secrets.token_urlsafe(50))
        temporary.chmod(0o600)
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process made it first: use theirs
        finally:
            temporary.unlink()
    return path.read_text().strip()


if DEBUG:
    SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="") or _development_secret_key(VAR_DIR / "secret_key")
    ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
else:
    # Production secrets and host names have no defaults: start-up stops and says what to set.
    SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
    if len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is "
            + ("not set" if not SECRET_KEY else "too weak (fewer than 50 characters or 5 distinct ones)")
            + " and DJANGO_DEBUG is false (its default): set it to a long random string, e.g. the output of "
            "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`; on a development machine set "
            "DJANGO_DEBUG=true instead (`export DJANGO_DEBUG=true`, as the README says)."
        )
    ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=[])
    if not ALLOWED_HOSTS:
        raise ImproperlyConfigured(
            "DJANGO_ALLOWED_HOSTS is not set and DJANGO_DEBUG is false: set it to the host names this "
            "service answers to, comma-separated (e.g. promptctl.example.com)."
        )

CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "simple_history",
    "ninja",  # serves the API docs page's assets locally (no CDN)
    # In layer order (docs/ARCHITECTURE.md): each app imports only those above it in this list.
    "managed_agents",
    "promptctl",
    "evals",
    "triage",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    "promptctl.middleware.RequestIdMiddleware",
]

# The triage API (/api/) has a handler of its own with this chain (config.serving.ApiHandler):
# async-native middleware only, since each classic middleware hook costs an API call a thread hop.
PROMPTCTL_API_MIDDLEWARE = [
    "promptctl.middleware.ApiSecurityMiddleware",
    "promptctl.middleware.RequestIdMiddleware",
]
# Threads per web process for the API's database steps; each keeps its connection (promptctl.dbsteps).
PROMPTCTL_DB_THREADS = env.int("PROMPTCTL_DB_THREADS", default=4)

# History views are read-only: no revert button (and promptctl's admin refuses the POST too).
SIMPLE_HISTORY_REVERT_DISABLED = True

ROOT_URLCONF = "config.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "promptctl" / "templates"],
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

WSGI_APPLICATION = None
ASGI_APPLICATION = "config.asgi.application"

# --- Database -------------------------------------------------------------
# SQLite in WAL mode with a busy timeout and IMMEDIATE transactions lets the web
# server and several worker processes write without "database is locked".
SQLITE_PATH = VAR_DIR / "promptctl.sqlite3"
DATABASES = {"default": env.db_url("DATABASE_URL", default=f"sqlite:///{SQLITE_PATH}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Django's backend, with one process's writers queued instead of polling (config/sqlite/base.py).
    DATABASES["default"]["ENGINE"] = "config.sqlite"
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    # A file (not :memory:) so that worker processes started by tests see the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test_promptctl.sqlite3")}
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=0))
# PostgreSQL with two logins (docs/OPERATIONS.md, "Database roles"): DATABASE_URL is the runtime role
# the processes use; DATABASE_OWNER_URL, the tables' owner, is the alias `owner` that
# `manage.py migrate --database owner` and `promptctl db roles` use. Unset, one URL does everything.
if env.str("DATABASE_OWNER_URL", default=""):
    DATABASES["owner"] = env.db_url("DATABASE_OWNER_URL")
    DATABASES["owner"]["TEST"] = {"MIRROR": "default"}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# Times to the second with the time zone on every admin page (config/formats/en/formats.py).
FORMAT_MODULE_PATH = ["config.formats"]

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("DJANGO_STATIC_ROOT", default=str(VAR_DIR / "static")))
# Static files are served beside Django by the ASGI application (config.serving):
# from the apps in development, by WhiteNoise from STATIC_ROOT in production.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

LOGIN_URL = "admin:login"

# --- Production hardening (all on when DEBUG is off) -----------------------
if not DEBUG:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
    SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    # Behind a TLS-terminating proxy that sets X-Forwarded-Proto (and strips it from clients).
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # Health probes come over plain HTTP on loopback (docker-compose, process managers): no redirect.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]

# --- Celery ----------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://localhost//")
BROKER_DIR = VAR_DIR / "broker"
if CELERY_BROKER_URL.startswith("filesystem://"):
    for folder in ("out", "processed", "control"):
        (BROKER_DIR / folder).mkdir(parents=True, exist_ok=True)
    # kombu's filesystem transport with message files written whole before they are visible (config/broker.py).
    CELERY_BROKER_TRANSPORT = "config.broker:Transport"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "out"),
        "data_folder_out": str(BROKER_DIR / "out"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "store_processed": False,
        "control_folder": str(BROKER_DIR / "control"),
        # kombu polls the folder; its 1 s default idles a thread for up to a second after every unit.
        "polling_interval": env.float("CELERY_BROKER_POLLING_INTERVAL", default=0.05),
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # Longer than the longest task (a session with retries), so a slow unit
        # is not redelivered while still running; a dead worker's units come back.
        "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=900),
    }
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
# Units are I/O-bound (waiting on sessions): a thread pool keeps many in flight.
CELERY_WORKER_POOL = env.str("CELERY_WORKER_POOL", default="threads")
CELERY_WORKER_CONCURRENCY = env.int("CELERY_WORKER_CONCURRENCY", default=32)
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ALWAYS_EAGER = False
# Eval units are routed to their own queue name only by convention: one default queue keeps
# `celery -A config worker` sufficient. Stalled runs are resumed by `evals.sweep_runs`,
# scheduled here for `celery beat` and also run by every worker on a timer (see docs/EVALS.md).
CELERY_BEAT_SCHEDULE = {
    "evals-sweep-runs": {
        "task": "evals.sweep_runs",
        "schedule": env.float("PROMPTCTL_EVAL_SWEEP_SECONDS", default=30.0),
    },
    # The audit chain's head, published outside the database (promptctl/audit/checkpoints.py).
    "audit-checkpoint": {
        "task": "promptctl.audit_checkpoint",
        "schedule": env.float("PROMPTCTL_AUDIT_CHECKPOINT_SECONDS", default=300.0),
    },
    # Retention (triage/services/retention.py, docs/OPERATIONS.md "Retention"): hourly by default.
    "retention-purge": {
        "task": "triage.retention_purge",
        "schedule": env.float("PROMPTCTL_RETENTION_PURGE_SECONDS", default=3600.0),
    },
}
# Retention of customer text: a logged ticket's subject, body, reply and request key (and a finished job's
# text and its history copies) are emptied after this many days; every figure is kept. History rows of
# tracked models older than PROMPTCTL_RETENTION_HISTORY_DAYS are deleted, each object's latest kept.
PROMPTCTL_RETENTION_TICKET_TEXT_DAYS = _days(
    "PROMPTCTL_RETENTION_TICKET_TEXT_DAYS", env.int("PROMPTCTL_RETENTION_TICKET_TEXT_DAYS", default=30)
)
PROMPTCTL_RETENTION_HISTORY_DAYS = _days(
    "PROMPTCTL_RETENTION_HISTORY_DAYS", env.int("PROMPTCTL_RETENTION_HISTORY_DAYS", default=90)
)
# Shared session-creation budget (managed_agents/ratelimit.py): at most BUDGET creates in any WINDOW seconds,
# BURST of them at once. Redis when the broker is Redis, else a flock'ed file under PROMPTCTL_VAR_DIR.
PROMPTCTL_RATE_LIMITER = env.str("PROMPTCTL_RATE_LIMITER", default="auto")  # auto | redis | file | off
PROMPTCTL_RATE_LIMIT_REDIS_URL = env.str("PROMPTCTL_RATE_LIMIT_REDIS_URL", default="")
PROMPTCTL_SESSION_CREATE_BUDGET = env.int("PROMPTCTL_SESSION_CREATE_BUDGET", default=300)
PROMPTCTL_SESSION_CREATE_WINDOW = env.float("PROMPTCTL_SESSION_CREATE_WINDOW", default=60.0)
PROMPTCTL_SESSION_CREATE_BURST = env.int("PROMPTCTL_SESSION_CREATE_BURST", default=20)
PROMPTCTL_SESSION_CREATE_MARGIN = env.float(
    "PROMPTCTL_SESSION_CREATE_MARGIN", default=1.0
)  # seconds of delay tolerated
# A running run with no new result for this long is resumed by the sweep (must exceed one unit's longest time).
PROMPTCTL_EVAL_STALL_SECONDS = env.float("PROMPTCTL_EVAL_STALL_SECONDS", default=300.0)
PROMPTCTL_EVAL_SWEEP_SECONDS = env.float("PROMPTCTL_EVAL_SWEEP_SECONDS", default=30.0)
PROMPTCTL_EVAL_WORKER_SWEEP = env.bool("PROMPTCTL_EVAL_WORKER_SWEEP", default=True)
# Workers write a heartbeat row every third of this; none newer than this means no live worker (evals.selectors).
PROMPTCTL_WORKER_STALE_SECONDS = env.float("PROMPTCTL_WORKER_STALE_SECONDS", default=15.0)
# Async triage jobs and shadow runs, swept on the same timer (docs/OPERATIONS.md, "Jobs and shadow runs after a
# worker dies"). A job attempt's lease ends this long after it starts (must exceed PROMPTCTL_SESSION_TIMEOUT);
# a queued job whose message went out this long ago is sent again; a logged request's missing shadow result
# (or canary comparison) is run again once this old, up to the horizon.
PROMPTCTL_JOB_LEASE_SECONDS = env.float("PROMPTCTL_JOB_LEASE_SECONDS", default=300.0)
PROMPTCTL_JOB_REQUEUE_SECONDS = env.float("PROMPTCTL_JOB_REQUEUE_SECONDS", default=60.0)
PROMPTCTL_SHADOW_SWEEP_AFTER_SECONDS = env.float("PROMPTCTL_SHADOW_SWEEP_AFTER_SECONDS", default=300.0)
PROMPTCTL_SHADOW_SWEEP_HORIZON_SECONDS = env.float("PROMPTCTL_SHADOW_SWEEP_HORIZON_SECONDS", default=86400.0)

# --- The audit key and checkpoints (docs/OPERATIONS.md) -------------------
# The key that MACs the audit chain lives outside the database: PROMPTCTL_AUDIT_KEY, or the first line of
# PROMPTCTL_AUDIT_KEY_FILE (later lines: old keys, kept to verify). In development with neither, a key file
# is made under PROMPTCTL_VAR_DIR on first use (mode 0600); production refuses to start without one.
PROMPTCTL_AUDIT_KEY = env.str("PROMPTCTL_AUDIT_KEY", default="")
PROMPTCTL_AUDIT_KEY_FILE = env.str("PROMPTCTL_AUDIT_KEY_FILE", default="")
PROMPTCTL_AUDIT_KEYS_OLD = env.list("PROMPTCTL_AUDIT_KEYS_OLD", default=[])
PROMPTCTL_AUDIT_KEY_GENERATE = False
if PROMPTCTL_AUDIT_KEY and PROMPTCTL_AUDIT_KEY_FILE:
    raise ImproperlyConfigured("PROMPTCTL_AUDIT_KEY and PROMPTCTL_AUDIT_KEY_FILE are both set: keep one of them.")
if not PROMPTCTL_AUDIT_KEY and not PROMPTCTL_AUDIT_KEY_FILE:
    if not DEBUG:
        raise ImproperlyConfigured(
            "PROMPTCTL_AUDIT_KEY is not set and DJANGO_DEBUG is false: set it to a long random string kept outside "
            "the database (`python -c 'import secrets; print(secrets.token_urlsafe(48))'`), or point "
            'PROMPTCTL_AUDIT_KEY_FILE at a file holding one (docs/OPERATIONS.md, "The audit key and checkpoints").'
        )
    PROMPTCTL_AUDIT_KEY_FILE = str(VAR_DIR / "audit.key")
    PROMPTCTL_AUDIT_KEY_GENERATE = True
elif PROMPTCTL_AUDIT_KEY and len(PROMPTCTL_AUDIT_KEY.strip()) < 32:
    raise ImproperlyConfigured("PROMPTCTL_AUDIT_KEY is shorter than 32 characters: use a long random string.")
elif PROMPTCTL_AUDIT_KEY_FILE and not Path(PROMPTCTL_AUDIT_KEY_FILE).is_file():
    raise ImproperlyConfigured(f"PROMPTCTL_AUDIT_KEY_FILE names {PROMPTCTL_AUDIT_KEY_FILE}, which is not a file.")
PROMPTCTL_AUDIT_CHECKPOINT_FILE = env.str(
    "PROMPTCTL_AUDIT_CHECKPOINT_FILE", default=str(VAR_DIR / "audit-checkpoints.jsonl")
)
PROMPTCTL_AUDIT_CHECKPOINT_SECONDS = env.float("PROMPTCTL_AUDIT_CHECKPOINT_SECONDS", default=300.0)
PROMPTCTL_AUDIT_WORKER_CHECKPOINT = env.bool("PROMPTCTL_AUDIT_WORKER_CHECKPOINT", default=True)

# --- Managed Agents boundary ---------------------------------------------
# ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL are the SDK's own variables. With no
# base URL the SDK talks to the live API; the emulator accepts any key.
ANTHROPIC_API_KEY = env.str("ANTHROPIC_API_KEY", default="")
ANTHROPIC_BASE_URL = env.str("ANTHROPIC_BASE_URL", default="")
PROMPTCTL_SESSION_TIMEOUT = env.float("PROMPTCTL_SESSION_TIMEOUT", default=120.0)
PROMPTCTL_MAX_ATTEMPTS = env.int("PROMPTCTL_MAX_ATTEMPTS", default=6)
PROMPTCTL_BACKOFF_BASE = env.float("PROMPTCTL_BACKOFF_BASE", default=0.5)
PROMPTCTL_BACKOFF_CAP = env.float("PROMPTCTL_BACKOFF_CAP", default=20.0)
PROMPTCTL_DEFAULT_MODEL = env.str("PROMPTCTL_DEFAULT_MODEL", default="claude-sonnet-4-6")

# --- Input caps (promptctl/inputs.py, managed_agents/validation.py, evals/testset_input.py) -----
# Bad input is refused with one line before anything is sent or saved; files are read only up to their cap.
PROMPTCTL_MAX_PROMPT_BYTES = env.int("PROMPTCTL_MAX_PROMPT_BYTES", default=100_000)
PROMPTCTL_MAX_TESTSET_BYTES = env.int("PROMPTCTL_MAX_TESTSET_BYTES", default=20_000_000)
PROMPTCTL_MAX_TESTSET_CASES = env.int("PROMPTCTL_MAX_TESTSET_CASES", default=10_000)
PROMPTCTL_MAX_JSON_DEPTH = env.int("PROMPTCTL_MAX_JSON_DEPTH", default=20)

# --- Notifications (promptctl/services/notifications.py; docs/OPERATIONS.md, "Notifications") ----------
# E-mail through Django's mail framework: printed by the console backend unless EMAIL_URL names a server
# (django-environ's form, e.g. smtp+tls://user:password@mail.example.com:587) or DJANGO_EMAIL_BACKEND a backend.
EMAIL_URL = env.str("EMAIL_URL", default="")
if EMAIL_URL:
    globals().update(environ.Env.email_url_config(EMAIL_URL))
EMAIL_BACKEND = env.str(
    "DJANGO_EMAIL_BACKEND",
    default=globals().get("EMAIL_BACKEND") or "django.core.mail.backends.console.EmailBackend",
)
DEFAULT_FROM_EMAIL = env.str("DJANGO_DEFAULT_FROM_EMAIL", default="promptctl@localhost")
PROMPTCTL_PUBLIC_URL = env.str("PROMPTCTL_PUBLIC_URL", default="http://127.0.0.1:8000").rstrip("/")
PROMPTCTL_WEBHOOK_TIMEOUT = env.float("PROMPTCTL_WEBHOOK_TIMEOUT", default=10.0)  # seconds per attempt
PROMPTCTL_WEBHOOK_MAX_ATTEMPTS = env.int("PROMPTCTL_WEBHOOK_MAX_ATTEMPTS", default=5)
PROMPTCTL_WEBHOOK_BACKOFF = env.float("PROMPTCTL_WEBHOOK_BACKOFF", default=10.0)  # 10 s, 30 s, 90 s, 270 s: x3
CELERY_BEAT_SCHEDULE["webhook-sweep"] = {"task": "promptctl.webhook_sweep", "schedule": 60.0}
# Bound Managed Agents deployments read and compared with what promptctl set (promptctl/services/deployments.py).
CELERY_BEAT_SCHEDULE["deployments-check"] = {
    "task": "promptctl.deployments_check",
    "schedule": env.float("PROMPTCTL_DEPLOYMENTS_CHECK_SECONDS", default=300.0),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("PROMPTCTL_LOG_LEVEL", default="WARNING")},
    # Every audit checkpoint is also a log line, whatever the root level, so log shipping carries it off the host.
    "loggers": {"promptctl.audit.checkpoint": {"level": "INFO"}},
}
