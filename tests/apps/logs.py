"""Apps for the log tests.

``app`` answers ``hello`` with the response headers ``X-Resp-Id: r-42`` and ``X-Trace`` (the
value of the request's ``X-Trace``, or ``none``); ``/empty`` answers 204 with no body;
``/fail`` writes a line to ``wsgi.errors`` and answers 500.

``logged_app`` is the same app in a module that configures Python's ``logging`` when it is
imported, as applications do: every record of the ``ferrowsgi`` loggers is appended as one
JSON object to the file named by ``$LOG_CAPTURE``, with the record's level, logger name,
message and the access record's ``extra`` fields.
"""

from __future__ import annotations

import json
import logging
import os

ACCESS_FIELDS = (
    "remote_addr",
    "method",
    "uri",
    "path",
    "query",
    "protocol",
    "status",
    "bytes",
    "referer",
    "user_agent",
    "duration_us",
    "pid",
)


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/empty":
        start_response("204 No Content", [("X-Resp-Id", "r-42")])
        return []
    if path == "/fail":
        environ["wsgi.errors"].write("log-test failure marker\n")
        start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
        return [b"failed\n"]
    headers = [
        ("Content-Type", "text/plain"),
        ("X-Resp-Id", "r-42"),
        ("X-Trace", environ.get("HTTP_X_TRACE", "none")),
    ]
    start_response("200 OK", headers)
    return [b"hello"]


class JsonLinesHandler(logging.Handler):
    """Appends each record as one JSON line: what the test checks."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def emit(self, record: logging.LogRecord) -> None:
        entry = {
            "logger": record.name,
            "level": record.levelname,
            "levelno": record.levelno,
            "message": record.getMessage(),
        }
        for key in ACCESS_FIELDS:
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")


def configure_logging() -> None:
    handler = JsonLinesHandler(os.environ["LOG_CAPTURE"])
    root = logging.getLogger("ferrowsgi")
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
