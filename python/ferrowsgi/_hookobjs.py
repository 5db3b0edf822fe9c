"""The objects server hooks receive, shaped like gunicorn's.

gunicorn passes its arbiter, its worker, its parsed request and its response
object; hooks written for it read a handful of attributes of each. These
classes provide those attributes (and no more: a hook that reaches into
gunicorn's internals, such as ``worker.wsgi`` or ``server.WORKERS``, fails
with an AttributeError that names the attribute).

``server`` (``on_starting``, ``when_ready``, ``pre_fork``, ``post_fork``,
``worker_exit``, ``child_exit``, ``nworkers_changed``, ``on_reload``,
``on_exit``): ``.pid``, ``.cfg``, ``.log``, ``.proc_name``.

``worker`` (``pre_fork``, ``post_fork``, ``post_worker_init``,
``worker_int``, ``worker_abort``, ``worker_exit``, ``child_exit``,
``pre_request``, ``post_request``): ``.pid`` (``None`` in ``pre_fork``,
before the fork), ``.ppid``, ``.age`` (the worker's number, from 1),
``.nr`` (requests started), ``.booted``, ``.alive``, ``.cfg``, ``.log``.
The object ``pre_fork`` receives is the one the forked worker goes on with,
and the one the master passes to ``child_exit``.

``req`` (``pre_request``, ``post_request``): ``.method``, ``.uri`` (the
request target), ``.path``, ``.query``, ``.version`` (``(1, 1)``),
``.headers`` (list of ``(NAME, value)`` str pairs, names in capitals as
gunicorn gives them), ``.scheme``, ``.remote_addr``.

``resp`` (``post_request``): ``.status`` (``"200 OK"``), ``.status_code``
(``200``), ``.headers`` (list of ``(name, value)`` str pairs).

``.cfg`` holds every setting by ferrowsgi's name and by gunicorn's (so both
``cfg.keep_alive`` and ``cfg.keepalive`` work); ``.log`` is the
``ferrowsgi.error`` logger.
"""

from __future__ import annotations

import logging
import os
import types
from typing import Any

__all__ = [
    "Request",
    "Response",
    "Server",
    "Worker",
    "current_worker",
    "set_worker",
    "settings_namespace",
]

_log = logging.getLogger("ferrowsgi.error")


def settings_namespace(settings: dict[str, Any]) -> types.SimpleNamespace:
    """The ``cfg`` of hooks' objects: every setting as an attribute."""
    return types.SimpleNamespace(**settings)


class Server:
    """gunicorn's arbiter, as far as hooks use it."""

    def __init__(self, cfg: types.SimpleNamespace) -> None:
        self.pid = os.getpid()
        self.cfg = cfg
        self.log = _log
        self.proc_name = getattr(cfg, "name", None) or "ferrowsgi"

    def __repr__(self) -> str:
        return f"<ferrowsgi server pid={self.pid}>"


class Worker:
    """A worker process, as far as hooks use it."""

    def __init__(self, cfg: types.SimpleNamespace, age: int = 1) -> None:
        self.pid = os.getpid()
        self.ppid = os.getppid()
        self.age = age
        self.nr = 0
        self.booted = False
        self.alive = True
        self.cfg = cfg
        self.log = _log

    def __repr__(self) -> str:
        return f"<ferrowsgi worker pid={self.pid}>"


class Request:
    """The request, as ``pre_request`` and ``post_request`` see it."""

    __slots__ = ("headers", "method", "path", "query", "remote_addr", "scheme", "uri", "version")

    def __init__(
        self,
        method: str,
        uri: str,
        path: str,
        query: str,
        version: tuple[int, int],
        headers: list[tuple[str, str]],
        scheme: str,
        remote_addr: str,
    ) -> None:
        self.method = method
        self.uri = uri
        self.path = path
        self.query = query
        self.version = version
        self.headers = headers
        self.scheme = scheme
        self.remote_addr = remote_addr

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri}>"


class Response:
    """The response, as ``post_request`` sees it."""

    __slots__ = ("headers", "status", "status_code")

    def __init__(self, status: str, headers: list[tuple[str, str]]) -> None:
        self.status = status
        try:
            self.status_code = int(status.split(None, 1)[0])
        except (ValueError, IndexError):
            self.status_code = 0
        self.headers = headers

    def __repr__(self) -> str:
        return f"<Response {self.status}>"


_worker: Worker | None = None


def set_worker(worker: Worker) -> None:
    """Make ``worker`` the one request hooks receive in this process (a
    worker process sets its own after it starts)."""
    global _worker
    _worker = worker


def current_worker() -> Worker:
    """The worker object of this process (one with no settings if none was
    set, as under ``ferrowsgi.serve()``)."""
    global _worker
    if _worker is None:
        _worker = Worker(settings_namespace({}))
    return _worker
