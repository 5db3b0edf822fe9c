"""Mounting WSGI applications under URL prefixes.

:class:`Mount` is a plain PEP 3333 application: it dispatches each request
to the application mounted at the longest prefix of ``PATH_INFO`` that ends
on a path-segment boundary, moving the prefix from ``PATH_INFO`` to the end
of ``SCRIPT_NAME``. It relies on nothing of ferrowsgi's, so it runs under
any WSGI server, and it nests: a :class:`Mount` may be mounted in another.

The command line's ``--mount`` and ``--root-path`` build one of these
around the applications they name, so there is a single dispatcher.

Matching is done on ``PATH_INFO`` as the server hands it over: already
percent-decoded (PEP 3333), as every WSGI dispatcher matches. An encoded
slash (``%2F``) is therefore a segment boundary like ``/``:
``/api%2Fusers`` reaches the application at ``/api`` with ``PATH_INFO``
``/users``. The undecoded target stays in ``REQUEST_URI``/``RAW_URI`` for
an application that must tell them apart.
"""

from __future__ import annotations

# Typing names only annotate: the package is imported by every process
# start, ferrowsgi cgi's too, and typing costs a few ms of it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any, Callable, Union

    WSGIApp = Callable[..., Any]
    Apps = Union[Mapping[str, WSGIApp], Iterable[tuple[str, WSGIApp]]]

__all__ = ["Mount", "check_prefix"]

_NOT_FOUND = b"Not Found\n"
_NOT_FOUND_HEADERS = [
    ("Content-Type", "text/plain; charset=utf-8"),
    ("Content-Length", str(len(_NOT_FOUND))),
]

#: Characters a prefix may not hold: a prefix is a decoded path, so a query,
#: a fragment or a percent escape in it would never match what a client
#: sends (``%`` would have to be written as the character it stands for).
_FORBIDDEN = frozenset("?#%")


def check_prefix(prefix: object, what: str = "mount prefix") -> str:
    """Checks a prefix and returns it in ``PATH_INFO``'s form.

    A prefix is ``''`` (the root) or a decoded path that starts with ``/``
    and does not end with one, with no empty, ``.`` or ``..`` segment, no
    ``?``, ``#`` or ``%`` and no whitespace or control character. Non-ASCII
    characters stand for their UTF-8 bytes, which is how ``PATH_INFO``
    carries them (bytes as latin-1 characters). Raises :class:`ValueError`
    (:class:`TypeError` for a non-string) with a one-line message.
    """
    if not isinstance(prefix, str):
        raise TypeError(f"{what} must be a string, not {type(prefix).__name__}")
    if prefix == "":
        return prefix
    if prefix == "/":
        raise ValueError(f"{what} '/' is the root: write it as ''")
    if not prefix.startswith("/"):
        raise ValueError(f"{what} {prefix!r} must start with '/'")
    if prefix.endswith("/"):
        raise ValueError(f"{what} {prefix!r} must not end with '/'")
    bad = next((c for c in prefix if c in _FORBIDDEN or c.isspace() or not c.isprintable()), None)
    if bad is not None:
        raise ValueError(f"{what} {prefix!r} must not contain {bad!r}")
    for segment in prefix[1:].split("/"):
        if segment in ("", ".", ".."):
            raise ValueError(f"{what} {prefix!r} has an empty, '.' or '..' segment")
    return prefix.encode("utf-8").decode("latin-1")


def _pairs(apps: Apps) -> list[tuple[str, WSGIApp]]:
    # A mapping is taken by its items; anything else as (prefix, app) pairs.
    items = apps.items() if hasattr(apps, "items") else apps
    out: list[tuple[str, WSGIApp]] = []
    seen: set[str] = set()
    for item in items:
        try:
            prefix, app = item
        except (TypeError, ValueError):
            raise TypeError(
                "Mount takes a mapping of prefix to application, or (prefix, application) pairs"
            ) from None
        wsgi_prefix = check_prefix(prefix)
        if wsgi_prefix in seen:
            raise ValueError(f"mount prefix {prefix!r} is given twice")
        if not callable(app):
            raise TypeError(
                f"the application mounted at {prefix!r} is not callable (a {type(app).__name__})"
            )
        seen.add(wsgi_prefix)
        out.append((wsgi_prefix, app))
    return out


class Mount:
    """A WSGI application that dispatches on URL prefixes::

        application = Mount({"/api": api, "/admin": admin, "": site})

    The longest prefix that matches wins, on path-segment boundaries:
    ``/api`` takes ``/api`` and ``/api/x`` but never ``/apix``. The chosen
    application sees ``SCRIPT_NAME`` extended by the prefix (never ending in
    ``/``) and ``PATH_INFO`` the rest: ``''`` for ``/api`` itself, otherwise
    a path starting with ``/`` (``/`` for ``/api/``). The prefix ``''`` is
    the root application, which gets every other request with the environ
    untouched; without one those requests get a plain-text 404.

    ``root_path`` places the whole mount under a prefix of its own, for a
    server that a proxy publishes under that prefix: ``SCRIPT_NAME`` gains
    it on every request, and ``PATH_INFO`` loses it when it starts with it
    on a segment boundary (a proxy that passes the full path) and is kept
    as it is otherwise (a proxy that strips the prefix). The applications
    are then matched on what is left.

    ``apps`` is a mapping of prefix to application or an iterable of
    ``(prefix, application)`` pairs. A prefix is ``''`` or starts with
    ``/`` and does not end with one (see :func:`check_prefix`); a bad or
    repeated prefix raises :class:`ValueError` here, never per request. The
    environ is changed in place, as PEP 3333 middleware may.
    """

    __slots__ = ("_heads", "_prefixes", "_root", "_root_path", "_root_path_slash")

    def __init__(self, apps: Apps, *, root_path: str = "") -> None:
        pairs = _pairs(apps)
        if not pairs:
            raise ValueError("Mount needs at least one application")
        self._root_path = check_prefix(root_path, "root path")
        self._root_path_slash = self._root_path + "/"
        self._root: WSGIApp | None = None
        # The prefixes grouped by their first segment ("/api" for "/api" and
        # "/api/v2"): a request looks up its own first segment once, then
        # compares only with the prefixes of that group, so the cost does not
        # grow with the number of mounts. In a group, the prefixes longer
        # than the first segment are tried longest first; the one equal to
        # it (if mounted) needs no comparison, since the lookup matched it on
        # a segment boundary already.
        longer: dict[str, list[tuple[str, str, int, WSGIApp]]] = {}
        at_head: dict[str, tuple[str, int, WSGIApp]] = {}
        for prefix, app in pairs:
            if prefix == "":
                self._root = app
                continue
            cut = prefix.find("/", 1)
            if cut < 0:
                at_head[prefix] = (prefix, len(prefix), app)
            else:
                longer.setdefault(prefix[:cut], []).append((prefix, prefix + "/", len(prefix), app))
        self._heads: dict[str, tuple[tuple[tuple[str, str, int, WSGIApp], ...], Any]] = {}
        for head in set(longer) | set(at_head):
            routes = sorted(longer.get(head, ()), key=lambda r: r[2], reverse=True)
            self._heads[head] = (tuple(routes), at_head.get(head))
        self._prefixes = sorted((p for p, _ in pairs if p), key=len, reverse=True)

    @property
    def prefixes(self) -> list[str]:
        """The mounted prefixes (as ``PATH_INFO`` carries them), longest first,
        ``''`` last when there is a root application."""
        return self._prefixes + ([""] if self._root is not None else [])

    def __repr__(self) -> str:
        root = f", root_path={self._root_path!r}" if self._root_path else ""
        return f"<ferrowsgi.Mount {self.prefixes!r}{root}>"

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        root_path = self._root_path
        if root_path:
            if path == root_path:
                path = ""
            elif path.startswith(self._root_path_slash):
                path = path[len(root_path) :]
            environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + root_path
            environ["PATH_INFO"] = path
        # The first segment, up to the second '/' (the whole path if there
        # is none): one dict look-up finds the only prefixes that can match.
        cut = path.find("/", 1)
        group = self._heads.get(path if cut < 0 else path[:cut])
        if group is not None:
            longer, at_head = group
            for prefix, prefix_slash, n, app in longer:
                if path == prefix or path.startswith(prefix_slash):
                    environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + prefix
                    environ["PATH_INFO"] = path[n:]
                    return app(environ, start_response)
            if at_head is not None:
                prefix, n, app = at_head
                environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + prefix
                environ["PATH_INFO"] = path[n:]
                return app(environ, start_response)
        if self._root is not None:
            return self._root(environ, start_response)
        start_response("404 Not Found", list(_NOT_FOUND_HEADERS))
        return [_NOT_FOUND]
