"""ferrowsgi: a WSGI (PEP 3333) server with an engine written in Rust.

Serve an application until Ctrl-C::

    import ferrowsgi
    ferrowsgi.serve(app, host="127.0.0.1", port=8000, threads=4)

Or run one in the background, for tests::

    with ferrowsgi.background(app) as url:
        urllib.request.urlopen(url + "/")

Mount several applications under URL prefixes (a WSGI application of its
own, usable under any server)::

    application = ferrowsgi.Mount({"/api": api, "": site})
"""

from __future__ import annotations

import contextlib
import os
import threading

from ferrowsgi._ferrowsgi import (
    FileWrapper,
    RequestBodyTooLarge,
    RequestTimeout,
    Server,
    __version__,
)
from ferrowsgi._loader import freeze_heap
from ferrowsgi._mount import Mount
from ferrowsgi._runner import run_until_signal

# Typing names only annotate, and importing typing costs a few ms of every
# process start (ferrowsgi cgi starts one per request).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Iterator, Mapping, Sequence

__all__ = [
    "FileWrapper",
    "Mount",
    "RequestBodyTooLarge",
    "RequestTimeout",
    "Server",
    "__version__",
    "background",
    "serve",
]


def _binds(host: str, port: int, bind: Sequence[str] | None) -> list[str]:
    if bind:
        return [str(b) for b in bind]
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return [f"{host}:{int(port)}"]


def _mounted(
    app: Callable[..., Any] | None,
    mount: Mapping[str, Callable[..., Any]] | None,
    root_path: str,
) -> Callable[..., Any]:
    """``app`` with the applications of ``mount`` beside it and under
    ``root_path``, as the command line's ``--mount`` and ``--root-path``."""
    if not mount and not root_path:
        if app is None:
            raise TypeError("no application: pass one, or mount some with mount={...}")
        return app
    pairs = list((mount or {}).items())
    if app is not None:
        pairs.insert(0, ("", app))
    return Mount(pairs, root_path=root_path)


def _server(
    app: Callable[..., Any],
    host: str | None,
    port: int | None,
    default_port: int,
    threads: int | None,
    bind: Sequence[str] | None,
    config: str | os.PathLike[str] | None,
    options: dict[str, Any],
) -> Server:
    """A bound :class:`Server`: addresses and threads given here win over the configuration
    file's, which win over the defaults (``127.0.0.1`` and ``default_port``, one thread)."""
    binds = _binds(
        "127.0.0.1" if host is None else host, default_port if port is None else port, bind
    )
    given = bool(bind) or host is not None or port is not None
    if threads is not None:
        options["threads"] = threads
    return Server(
        app,
        binds if given else None,
        config=None if config is None else os.fspath(config),
        default_bind=None if given else binds,
        **options,
    )


def serve(
    app: Callable[..., Any] | None,
    host: str | None = None,
    port: int | None = None,
    *,
    threads: int | None = None,
    bind: Sequence[str] | None = None,
    gc_freeze: bool = True,
    mount: Mapping[str, Callable[..., Any]] | None = None,
    root_path: str = "",
    config: str | os.PathLike[str] | None = None,
    **options: Any,
) -> None:
    """Serve ``app`` until Ctrl-C or SIGTERM, then return.

    ``host`` and ``port`` default to ``127.0.0.1`` and 8000; ``bind`` (a
    list such as ``["0.0.0.0:8000", "unix:/run/app.sock"]``, in ``--bind``'s
    forms: ``"fastcgi://fd:3"`` adopts inherited descriptor 3, which the
    server then owns and closes) replaces them.
    Before the first request, the objects that exist then are collected once
    and frozen (``gc.freeze()``), as the command line does unless given
    ``--no-gc-freeze``; ``gc_freeze=False`` leaves them to the garbage
    collector.

    Other options are the command line's settings, by the same names (as in
    ``ferrowsgi.toml``, or gunicorn's), checked by the same table: for the
    logs ``access_log`` (bool), ``access_logfile`` (a path, or ``"-"`` for
    stdout), ``access_logformat`` (``"combined"``, ``"json"`` or gunicorn's
    ``%(h)s ...`` atoms), ``error_logfile``, ``log_level``, ``log_format``
    (``"text"`` or ``"json"``) and ``log_to_python``; also ``debug``,
    ``server_header``, ``keep_alive``, ``read_timeout``, ``write_timeout``
    and ``timeout`` (seconds a request may run: then a 504 and
    :class:`RequestTimeout` in its thread; 0 for none), ``timeout_grace``
    (these five take fractions of a second too), ``limit_request_body``,
    ``loopback_congestion``, ``stream_bodies``, ``health_path``, the other
    limits. A wrong name or value raises ValueError naming it.

    ``config`` names a configuration file as ``-c`` does: a ``.toml`` file,
    a gunicorn-style ``.py`` module (its ``pre_request`` and
    ``post_request`` hooks apply) or ``python:pkg.module``. Keyword
    arguments win over it; its settings that concern the command line's
    processes (``workers``, ``preload``, ...) are ignored with a warning.

    ``mount`` (``{"/api": api, ...}``) serves more applications under URL
    prefixes beside ``app`` (which may then be ``None``: no root
    application), and ``root_path`` serves everything under a prefix that
    a proxy publishes it at, as ``--mount`` and ``--root-path`` do (see
    :class:`Mount`).
    """
    app = _mounted(app, mount, root_path)
    server = _server(app, host, port, 8000, threads, bind, config, options)
    if gc_freeze:
        freeze_heap()
    run_until_signal(server)


@contextlib.contextmanager
def background(
    app: Callable[..., Any] | None,
    host: str | None = None,
    port: int | None = None,
    *,
    threads: int | None = None,
    bind: Sequence[str] | None = None,
    mount: Mapping[str, Callable[..., Any]] | None = None,
    root_path: str = "",
    config: str | os.PathLike[str] | None = None,
    **options: Any,
) -> Iterator[str]:
    """Run ``app`` on a background thread; yield its URL; stop it on exit.

    Port 0 (the default) picks a free port. The URL is ``http://HOST:PORT``,
    or ``unix:/path`` for a unix-socket bind::

        with ferrowsgi.background(app) as url:
            body = urllib.request.urlopen(url + "/").read()

    ``mount``, ``root_path``, ``config`` and the other options are those of
    :func:`serve`.
    """
    app = _mounted(app, mount, root_path)
    server = _server(app, host, port, 0, threads, bind, config, options)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            server.serve(banner=False)
        except BaseException as e:  # reported to the caller on exit
            failure.append(e)

    thread = threading.Thread(target=run, name="ferrowsgi-background", daemon=True)
    thread.start()
    try:
        yield server.urls[0]
    finally:
        server.stop()
        thread.join(timeout=60)
    if failure:
        raise failure[0]
