"""Settings of mount_django: no database, no templates, no middleware."""

SECRET_KEY = "ferrowsgi-tests-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "frameworks.mount_django"
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
DATABASES: dict = {}
USE_TZ = True
