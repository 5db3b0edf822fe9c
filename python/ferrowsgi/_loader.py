"""Finding the WSGI application named on the command line.

``APP`` is ``pkg.mod:name``, ``pkg.mod`` (which must define ``application``
or ``app``), or a factory call ``pkg.mod:create_app(...)`` whose arguments
are Python literals. The call is parsed with :mod:`ast` and its arguments
evaluated with :func:`ast.literal_eval`: nothing is ``eval``'d.

:func:`freeze_heap` is the step after loading: what the import left is
collected once and kept out of later collections.

:func:`load_mounted` loads the applications of ``--mount`` and
``--root-path`` beside the main one and joins them in one
:class:`ferrowsgi.Mount`.
"""

from __future__ import annotations

import gc
import importlib
import keyword

from ferrowsgi._mount import Mount

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing costs every process start a few ms
    from typing import Any, Callable
__all__ = ["AppLoadError", "freeze_heap", "load_app", "load_mounted"]


class AppLoadError(Exception):
    """The application could not be found; the message is one line."""


def _parse_target(spec: str, target: str) -> tuple[str, tuple[Any, ...], dict[str, Any], bool]:
    name = target.strip()
    if name.isascii() and name.isidentifier() and not keyword.iskeyword(name):
        # A plain name, the common case, needs no parser: importing ast costs
        # several ms of start-up, paid per request by ferrowsgi cgi.
        return name, (), {}, False
    import ast

    try:
        node = ast.parse(target.strip(), mode="eval").body
    except SyntaxError:
        raise AppLoadError(f"invalid application name {target!r} in {spec!r}") from None
    if isinstance(node, ast.Name):
        return node.id, (), {}, False
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        try:
            args = tuple(ast.literal_eval(a) for a in node.args)
            kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg}
        except ValueError:
            raise AppLoadError(
                f"the arguments of {target!r} must be literals (strings, numbers, "
                "True/False/None, lists, dicts)"
            ) from None
        if any(kw.arg is None for kw in node.keywords):
            raise AppLoadError(f"**kwargs are not allowed in {target!r}")
        return node.func.id, args, kwargs, True
    raise AppLoadError(
        f"invalid application name {target!r}: expected NAME or NAME(literal arguments)"
    )


def load_app(spec: str) -> Callable[..., Any]:
    """Import and return the application named by ``spec``."""
    module_name, _, target = spec.partition(":")
    if not module_name or not all(p.isidentifier() for p in module_name.split(".")):
        raise AppLoadError(f"invalid application {spec!r}: expected MODULE:NAME")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        missing = e.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            raise AppLoadError(f"cannot import module {module_name!r}: {e}") from None
        raise AppLoadError(
            f"error while importing {module_name!r}: {type(e).__name__}: {e}"
        ) from None
    except Exception as e:
        import traceback  # only for this error: it costs start-up a few ms otherwise

        where = traceback.extract_tb(e.__traceback__)[-1]
        raise AppLoadError(
            f"error while importing {module_name!r}: {type(e).__name__}: {e} "
            f"({where.filename}, line {where.lineno})"
        ) from None
    if target:
        name, args, kwargs, is_call = _parse_target(spec, target)
    else:
        name = next((n for n in ("application", "app") if hasattr(module, n)), "")
        if not name:
            raise AppLoadError(
                f"module {module_name!r} has no 'application' or 'app'; "
                f"name it as {module_name}:NAME"
            )
        args, kwargs, is_call = (), {}, False
    try:
        obj = getattr(module, name)
    except AttributeError:
        raise AppLoadError(f"module {module_name!r} has no attribute {name!r}") from None
    if is_call:
        if not callable(obj):
            raise AppLoadError(f"{module_name}:{name} is not callable")
        try:
            obj = obj(*args, **kwargs)
        except Exception as e:
            raise AppLoadError(
                f"calling the factory {target!r} failed: {type(e).__name__}: {e}"
            ) from None
    if not callable(obj):
        raise AppLoadError(
            f"{spec!r} is not a WSGI application: a {type(obj).__name__} is not callable"
        )
    return obj


def load_mounted(
    spec: str, mounts: list[tuple[str, str]], root_path: str = ""
) -> Callable[..., Any]:
    """Import the application ``spec`` (``''`` for none) and those of ``mounts``
    (``(prefix, spec)`` pairs), and return them as one application.

    With no mounts and no root path that is the application itself, so a
    plain server pays nothing for the feature. Otherwise it is a
    :class:`~ferrowsgi.Mount` with ``spec`` as the root application. An
    import error names the prefix of the application that failed.
    """
    if not mounts and not root_path:
        return load_app(spec)
    pairs: list[tuple[str, Callable[..., Any]]] = []
    if spec:
        pairs.append(("", load_app(spec)))
    for prefix, mounted in mounts:
        try:
            pairs.append((prefix, load_app(mounted)))
        except AppLoadError as e:
            where = prefix or "''"
            raise AppLoadError(f"the application mounted at {where}: {e}") from None
    try:
        mount = Mount(pairs, root_path=root_path)
    except (TypeError, ValueError) as e:
        raise AppLoadError(str(e)) from None
    # The bound method, not the instance: calling an instance looks its
    # __call__ up on every call, which measured about 40 ns more per request
    # (bench/mount.py's figures are for the instance).
    return mount.__call__


def freeze_heap() -> int:
    """Collect once, then leave every surviving object out of later collections.

    Called once the application is loaded and the server built, before the first
    request. What exists then (modules, classes, routes, settings, templates) lives as
    long as the process, yet every full collection would walk all of it again: with a
    framework loaded, tens of thousands of objects and milliseconds per collection, paid
    by whichever request is in progress. The collection first frees the import's own
    cyclic garbage, so none of it is kept for good. Returns how many objects are frozen.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
