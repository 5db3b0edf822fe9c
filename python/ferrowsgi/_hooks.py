"""Server hooks, as a gunicorn configuration module defines them.

The configuration loader installs the hooks it found with :func:`install`;
the master, the workers and the request path run them through :func:`call`,
which does nothing for a hook that is not set. A hook that raises is logged
and does not stop the server, except where its caller says otherwise.

The names and arguments are gunicorn's:

=====================  ==========================  =============================
hook                   called in                   arguments
=====================  ==========================  =============================
``on_starting``        the master, before binding  ``(server)``
``when_ready``         the master, before forking  ``(server)``
``post_fork``          a worker, just after fork   ``(server, worker)``
``post_worker_init``   a worker, app imported      ``(worker)``
``worker_exit``        a worker, as it leaves      ``(server, worker)``
``on_exit``            the master, as it leaves    ``(server)``
``pre_request``        a worker, before the app    ``(worker, req)``
``post_request``       a worker, after the app     ``(worker, req, environ, resp)``
``on_reload``          the master, on SIGHUP       ``(server)``
``child_exit``         the master, a worker left   ``(server, worker)``
``worker_int``         a worker, on SIGINT/QUIT    ``(worker)``
``nworkers_changed``   the master, TTIN/TTOU       ``(server, new_value, old_value)``
``pre_fork``           the master, before a fork   ``(server, worker)``
``worker_abort``       a worker retired as lost    ``(worker)``
=====================  ==========================  =============================
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from ferrowsgi._ferrowsgi import HOOK_NAMES as _HOOK_NAMES

__all__ = ["HOOK_NAMES", "call", "get", "install"]

# One table, the settings layer's, names the hooks (the command line checks files by it).
HOOK_NAMES: tuple[str, ...] = _HOOK_NAMES

_hooks: dict[str, Callable[..., Any]] = {}


def install(hooks: Mapping[str, Callable[..., Any]]) -> None:
    """Replace the installed hooks with ``hooks`` (name to callable)."""
    unknown = sorted(set(hooks) - set(HOOK_NAMES))
    if unknown:
        raise ValueError(f"unknown server hook: {unknown[0]}")
    _hooks.clear()
    _hooks.update(hooks)


def get(name: str) -> Callable[..., Any] | None:
    """The hook installed under ``name``, or None."""
    return _hooks.get(name)


def call(name: str, *args: Any) -> None:
    """Run the hook ``name`` with ``args`` if one is installed.

    Exceptions propagate to the caller, which decides whether a failing
    hook is logged or fatal (gunicorn stops a worker whose ``post_fork``
    raises, for example).
    """
    hook = _hooks.get(name)
    if hook is not None:
        hook(*args)
