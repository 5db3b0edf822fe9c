"""``logs.app`` behind an application-side logging configuration (see ``apps.logs``)."""

from apps.logs import app, configure_logging

configure_logging()

__all__ = ["app"]
