"""The files ``--reload`` watches: those of the modules a worker imported, at start-up and
later (a module first imported while serving a request is picked up by :func:`new_files`,
which the worker calls about once a second)."""

from __future__ import annotations

import os
import sys
import traceback

__all__ = ["files_to_watch", "new_files"]

# What this process has handed to the watcher, and how many modules it had then.
_watched: set[str] = set()
_modules_seen = 0


def _error_files(error: BaseException | None) -> set[str]:
    """Files an import failure points at: a syntax error's file and the files of the
    traceback, through the chain of causes (the loader re-raises its own error ``from None``,
    which keeps the original as ``__context__``)."""
    found: set[str] = set()
    seen = 0
    while error is not None and seen < 10:
        seen += 1
        filename = getattr(error, "filename", None)
        if isinstance(error, SyntaxError) and isinstance(filename, str):
            found.add(filename)
        for frame in traceback.extract_tb(error.__traceback__):
            found.add(frame.filename)
        error = error.__cause__ or error.__context__
    return found


def files_to_watch(error: BaseException | None = None) -> list[str]:
    """The source files of every module imported so far (``__file__``, when it names a file
    that exists), and, when loading the application failed with ``error``, the files it
    points at (so that fixing a module that does not import is seen too), sorted."""
    global _modules_seen
    _modules_seen = len(sys.modules)
    candidates = _error_files(error)
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if isinstance(path, str):
            candidates.add(path)
    files = sorted({os.path.abspath(p) for p in candidates if os.path.isfile(p)})
    _watched.update(files)
    return files


def new_files() -> list[str]:
    """The files of modules imported since the last call (or :func:`files_to_watch`), sorted;
    when no module was imported meanwhile it costs one ``len(sys.modules)``."""
    if len(sys.modules) == _modules_seen:
        return []
    before = set(_watched)
    return [f for f in files_to_watch() if f not in before]
