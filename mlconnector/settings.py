"""Settings for ml-connector, read from the environment (12-factor, django-environ).

See README "Configuration": DATABASE_URL, REDIS_URL, FIELD_ENCRYPTION_KEY, SECRET_KEY, DEBUG, ALLOWED_HOSTS,
PUBLIC_BASE_URL. The default is a zero-setup SQLite file under var/ with django-q2's ORM broker.
"""

from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"
VAR_DIR.mkdir(exist_ok=True)

env = environ.Env()

DEBUG = env.bool("DEBUG", default=False)
PUBLIC_BASE_URL = env("PUBLIC_BASE_URL", default="http://127.0.0.1:8000").rstrip("/")


def _required_outside_debug(name, why):
    """Outside DEBUG a missing production setting stops the process at start (issue 10), never a silent default."""
    if not DEBUG and not env(name, default=""):
        raise ImproperlyConfigured(f"{name} is not set (DEBUG is off): {why}. See README, 'Running in production'.")


# Django signs sessions and django-q2 signs its task packages with SECRET_KEY: never a guessable default in production.
_required_outside_debug("SECRET_KEY", "set it to a long random value, e.g. "
                        "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`")
SECRET_KEY = env("SECRET_KEY", default="insecure-local-only-key-change-me-in-production-0123456789")
_required_outside_debug("ALLOWED_HOSTS", "set it to the host name(s) this deployment answers on, comma-separated")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_q",
    "import_export",
    "axes",
    "connector",
    "mappings",
    "audit",
    "reconcile",
    "alerts",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "connector.middleware.RequestSizeLimitMiddleware",  # 413 above MAX_REQUEST_BYTES
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # admin login throttling (django-axes); keep it last
]

ROOT_URLCONF = "mlconnector.urls"
WSGI_APPLICATION = "mlconnector.wsgi.application"

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

# --- Database -------------------------------------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'ml-connector.sqlite3'}")}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # IMMEDIATE + WAL: without them the ORM broker and concurrent writers hit "database is locked" and
    # django-q2 silently loses task results (measured; see shared/reference/django-stack.md).
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    DATABASES["default"].setdefault("TEST", {})
else:
    # A server database: keep connections open between requests (a new PostgreSQL backend per request costs
    # more than the webhook view itself), and check them before reuse.
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis (optional): cache, limiter, django-q2 broker ---------------------------------------------------
REDIS_URL = env("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    # Shared by every process (qcluster stats, limiter fallbacks); LocMem would not be.
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "ml_connector_cache"}}

Q_CLUSTER = {
    "name": "ml-connector",
    "workers": env.int("Q_WORKERS", default=2),
    "timeout": 600,  # hard kill per task
    "retry": 900,  # must exceed timeout, else long tasks run twice
    "max_attempts": 1,  # no blind redelivery: our sync code decides about retries
    "ack_failures": True,
    "catch_up": False,  # after downtime run each schedule once, not once per missed slot
    "save_limit": 1000,
    "poll": 0.5,
    "cache": "default",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# --- Secrets at rest --------------------------------------------------------------------------------------
_keys = env.list("FIELD_ENCRYPTION_KEY", default=[])
_key_file = VAR_DIR / "field-encryption.key"
if not _keys and not DEBUG:
    # Outside DEBUG the key comes from the environment only: never silently from a leftover demo key file.
    raise ImproperlyConfigured(
        "FIELD_ENCRYPTION_KEY is not set (DEBUG is off). Set it to a Fernet key (generate one with "
        "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`), "
        "several comma-separated to rotate keys. See README, 'Running in production'."
    )
if not _keys:
    # The demo (and DEBUG) run without configuration: they keep a generated key in a git-ignored local file.
    if not _key_file.exists() and DEBUG:
        from cryptography.fernet import Fernet

        _key_file.write_text(Fernet.generate_key().decode())
        _key_file.chmod(0o600)
    if not _key_file.exists():
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEY is not set. Set it to a Fernet key (generate one with "
            "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`), "
            "several comma-separated to rotate keys, or run scripts/demo.sh once to create a local key file."
        )
    _keys = [_key_file.read_text().strip()]
FIELD_ENCRYPTION_KEY = _keys if len(_keys) > 1 else _keys[0]

# --- Behind a TLS-terminating proxy (README, "Running in production") ---------------------------------------
_https = not DEBUG and env.bool("HTTPS", default=True)  # HTTPS=0 only for a plain-HTTP test install
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=_https)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # load balancers probe over plain HTTP
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=_https)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000 if _https else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
# The header the proxy sets to say the client spoke HTTPS, e.g. HTTP_X_FORWARDED_PROTO (only if it always sets it).
if env("SECURE_PROXY_SSL_HEADER", default=""):
    SECURE_PROXY_SSL_HEADER = (env("SECURE_PROXY_SSL_HEADER"), "https")
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[PUBLIC_BASE_URL] if PUBLIC_BASE_URL.startswith(
    "https://") else [])
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=12 * 3600)
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# --- Admin login throttling (django-axes): 5 failures for one user name from one address lock it for 15 min ---
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_ENABLED = env.bool("AXES_ENABLED", default=True)
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("LOGIN_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "admin/locked_out.html"

# --- Uploads: admin forms and CSV imports; a webhook body is capped separately (WEBHOOK_MAX_BODY) -------------
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
MAX_UPLOAD_BYTES = env.int("MAX_UPLOAD_BYTES", default=5 * 1024 * 1024)  # mapping CSV imports
MAX_REQUEST_BYTES = env.int("MAX_REQUEST_BYTES", default=MAX_UPLOAD_BYTES + 1024 * 1024)  # any request body
DATA_UPLOAD_MAX_NUMBER_FIELDS = 5000
# Tenant staff's connection tests: at most one per connection in this many seconds (and one at a time).
CONNECTION_TEST_INTERVAL = env.int("CONNECTION_TEST_INTERVAL", default=30)
# A replaced BILL webhook security key is still accepted this long (BILL switches keys within minutes).
WEBHOOK_PREVIOUS_KEY_GRACE_HOURS = env.int("WEBHOOK_PREVIOUS_KEY_GRACE_HOURS", default=24)
# CSV exports (admin) never start a cell with = + - @ tab or CR: spreadsheets would run it as a formula.
IMPORT_EXPORT_ESCAPE_FORMULAE_ON_EXPORT = True

# --- The rest ---------------------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
LOGIN_URL = "/admin/login/"

# Webhook bodies above this are refused with 413 before anything is stored.
WEBHOOK_MAX_BODY = 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = WEBHOOK_MAX_BODY + 1024

# Audit: API exchanges (with their bodies) older than this are pruned daily; outcomes are kept.
AUDIT_EXCHANGE_RETENTION_DAYS = env.int("AUDIT_EXCHANGE_RETENTION_DAYS", default=90)

# BILL request limiter: concurrent requests per organization across the deployment.
BILL_MAX_IN_FLIGHT = env.int("BILL_MAX_IN_FLIGHT", default=3)
SAP_PAGE_SIZE = env.int("SAP_PAGE_SIZE", default=100)  # rows per Service Layer page (Prefer: odata.maxpagesize)
# BILL's hourly limits per developer key, shared by every connection on that key (connector/budget.py).
BILL_REQUESTS_PER_HOUR = env.int("BILL_REQUESTS_PER_HOUR", default=20000)
BILL_LOGINS_PER_HOUR = env.int("BILL_LOGINS_PER_HOUR", default=200)
# Idle cycles cost (almost) nothing: reference data has its own cadence; the payments poll is the webhooks' safety net.
REFERENCE_REFRESH_HOURS = env.int("REFERENCE_REFRESH_HOURS", default=24)
PAYMENTS_POLL_MINUTES = env.int("PAYMENTS_POLL_MINUTES", default=60)
# Fairness: a cycle run from the task queue stops after this long and queues its continuation behind the others.
CYCLE_MAX_SECONDS = env.int("CYCLE_MAX_SECONDS", default=60)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "filters": {"redact": {"()": "connector.logfilter.RedactSecrets"}},  # no credential in a log line
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact"]}},
    "loggers": {
        "connector": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
        "django-q": {"handlers": ["console"], "level": "WARNING", "propagate": False},
    },
}

# --- Alerts (e-mail through Django's mail settings; the demo prints them on the console) ----------------------
EMAIL_BACKEND = env("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend" if DEBUG
                    else "django.core.mail.backends.smtp.EmailBackend")
if env("EMAIL_URL", default=""):
    vars().update(env.email_url("EMAIL_URL"))
ALERT_FROM_EMAIL = env("ALERT_FROM_EMAIL", default="ml-connector@localhost")
ALERT_OPERATOR_EMAILS = env.list("ALERT_OPERATOR_EMAILS", default=[])  # empty: active superusers with an e-mail
ALERT_WARN_AFTER_FAILURES = env.int("ALERT_WARN_AFTER_FAILURES", default=3)
ALERT_PAUSE_AFTER_FAILURES = env.int("ALERT_PAUSE_AFTER_FAILURES", default=6)
