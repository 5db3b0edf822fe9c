"""Reading a gunicorn-style ``.py`` configuration module.

The file is executed as a module, as gunicorn does with ``-c gunicorn.conf.py``;
its public globals are settings (gunicorn's names or ferrowsgi's) and its
functions named after server hooks are the hooks. :func:`read_module` returns
what it found; the settings are checked and merged on the Rust side
(``ferrowsgi_server::settings``), which knows every option.

Which globals count:

* names starting with ``_`` and names in capitals (``BASE_DIR``) are the
  module's own, as are modules and classes;
* a function named after one of gunicorn's server hooks is that hook (one
  that ferrowsgi does not call, such as ``pre_exec``, is a warning); any other
  function is a helper, unless its name is one letter or two away from a
  hook's, which is an error (a misspelt hook would never run);
* every other global is a setting, and a name that is no setting is an error.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import inspect
import os
import sys
import types
from typing import Any, Callable

from ferrowsgi._ferrowsgi import UNSUPPORTED_HOOK_NAMES
from ferrowsgi._hooks import HOOK_NAMES

__all__ = ["ConfigError", "read_module"]

#: gunicorn's hooks that have no call site here.
UNSUPPORTED_HOOKS: tuple[str, ...] = UNSUPPORTED_HOOK_NAMES

#: How many positional arguments each hook is called with (gunicorn's).
HOOK_ARITY = {
    "on_starting": 1,
    "when_ready": 1,
    "post_fork": 2,
    "post_worker_init": 1,
    "worker_exit": 2,
    "on_exit": 1,
    "pre_request": 2,
    "post_request": 4,
    "on_reload": 1,
    "child_exit": 2,
    "worker_int": 1,
    "nworkers_changed": 3,
    "pre_fork": 2,
    "worker_abort": 1,
}

#: Why each hook of :data:`UNSUPPORTED_HOOKS` is never called.
_WHY_UNSUPPORTED = {
    "pre_exec": "ferrowsgi never re-executes itself (USR2 is no binary upgrade)",
    "ssl_context": "ferrowsgi serves plain HTTP; TLS ends at a proxy in front of it",
}

#: How gunicorn names a configuration module on the import path.
_MODULE_PREFIX = "python:"


class ConfigError(Exception):
    """The configuration module is wrong; the message is one line."""


def _lines(path: str, source: str) -> dict[str, int]:
    """Line of each top-level name's last binding in the module's source."""
    where: dict[str, int] = {}
    try:
        tree = ast.parse(source, path)
    except SyntaxError as e:
        raise ConfigError(f"{path}:{e.lineno}: syntax error: {e.msg}") from None
    for node in tree.body:
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            targets = [node.target]
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            where[node.name] = node.lineno
        for t in targets:
            for n in ast.walk(t):
                if isinstance(n, ast.Name):
                    where[n.id] = node.lineno
    return where


def _plain(value: Any) -> Any:
    """A value as the settings layer takes it: bool, int, float, str, list
    of those, or None; anything else as its ``str()``."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict) and not value:
        return None  # gunicorn's default of its dict settings: unset
    return str(value)


def _check_arity(path: str, line: int | None, name: str, fn: Callable[..., Any]) -> None:
    want = HOOK_ARITY[name]
    try:
        inspect.signature(fn).bind(*([None] * want))
    except TypeError:
        at = f"{path}:{line}" if line else path
        s = "" if want == 1 else "s"
        raise ConfigError(f"{at}: hook {name} must take {want} argument{s}") from None
    except ValueError:
        pass  # no signature to check (a builtin): called as it is


def _module_file(name: str) -> str:
    """The source file of the module ``name`` on the import path (as
    gunicorn's ``-c python:pkg.module`` names it). The current directory
    is searched first, as for the application."""
    if not name or not all(part.isidentifier() for part in name.split(".")):
        raise ConfigError(f"configuration module {name!r} is not a dotted module name")
    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        spec = importlib.util.find_spec(name)
    except Exception as e:  # a parent package that fails to import
        raise ConfigError(
            f"cannot find configuration module {name}: {type(e).__name__}: {e}"
        ) from None
    finally:
        if added:
            sys.path.remove(cwd)
    if spec is None:
        raise ConfigError(f"cannot find configuration module {name} on the import path")
    origin = spec.origin
    if not origin or not origin.endswith(".py"):
        raise ConfigError(f"configuration module {name} has no Python source file ({origin})")
    return origin


def read_module(
    path: str,
) -> tuple[list[tuple[str, Any, int | None]], dict[str, Callable[..., Any]], list[str]]:
    """Execute the configuration module at ``path``, or the module named
    after ``python:`` (``python:pkg.gunicorn_conf``, found on the import
    path but executed afresh from its file, like a path, so that a reload
    reads it again).

    Returns its settings as ``(name, value, line)``, its hooks by name, and
    warnings (one line each). Raises :class:`ConfigError` with one line for a
    file that cannot be read or run, or a misspelt hook.
    """
    if path.startswith(_MODULE_PREFIX):
        path = _module_file(path[len(_MODULE_PREFIX) :])
    try:
        with open(path, encoding="utf-8") as f:
            source = f.read()
    except OSError as e:
        raise ConfigError(f"cannot read configuration file {path}: {e.strerror}") from None
    lines = _lines(path, source)
    spec = importlib.util.spec_from_file_location("__config__", path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot load configuration file {path}")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt):
            raise
        tb = e.__traceback__
        line = None
        here = os.path.abspath(path)
        while tb is not None:
            if os.path.abspath(tb.tb_frame.f_code.co_filename) == here:
                line = tb.tb_lineno
            tb = tb.tb_next
        at = f"{path}:{line}" if line else path
        raise ConfigError(f"{at}: {type(e).__name__}: {e}") from None
    settings: list[tuple[str, Any, int | None]] = []
    hooks: dict[str, Callable[..., Any]] = {}
    warnings: list[str] = []
    for name, value in vars(module).items():
        if name.startswith("_") or name.isupper():
            continue
        if isinstance(value, (types.ModuleType, type)):
            continue
        line = lines.get(name)
        at = f"{path}:{line}" if line else path
        if name in HOOK_NAMES:
            if not callable(value):
                raise ConfigError(f"{at}: hook {name} must be a function")
            _check_arity(path, line, name, value)
            hooks[name] = value
            continue
        if name in UNSUPPORTED_HOOKS:
            why = _WHY_UNSUPPORTED.get(name, "it has no call site here")
            warnings.append(f"{at}: server hook {name} is never called: {why}")
            continue
        if callable(value):
            near = difflib.get_close_matches(name, HOOK_NAMES + UNSUPPORTED_HOOKS, 1, 0.85)
            if near:
                raise ConfigError(f"{at}: unknown server hook {name!r} (did you mean {near[0]}?)")
            continue
        settings.append((name, _plain(value), line))
    # The module is not kept in sys.modules (as gunicorn does not), so a
    # second read (a reload) executes the file afresh.
    sys.modules.pop("__config__", None)
    return settings, hooks, warnings
