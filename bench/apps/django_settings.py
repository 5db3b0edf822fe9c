"""Minimal Django settings for the benchmark: no database, no middleware, no templates."""

SECRET_KEY = "benchmark-only-not-secret"  # noqa: S105 - never served beyond 127.0.0.1
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "apps.django_app"
INSTALLED_APPS = []
MIDDLEWARE = []
DATABASES = {}
USE_TZ = True
LOGGING_CONFIG = None
