"""A module with ``app`` and no ``application``."""

from wsgiref.validate import validator


def _app_only(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "8")])
    return [b"app only"]


app = validator(_app_only)
