"""The files ``--reload`` watches: those of the modules a worker imported."""

from __future__ import annotations

import os
import sys

__all__ = ["module_files"]


def module_files() -> list[str]:
    """The source files of every module imported so far (``__file__``, when it names a file
    that exists), sorted. Modules built into the interpreter and namespace packages have none.
    """
    files = set()
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if isinstance(path, str) and os.path.isfile(path):
            files.add(os.path.abspath(path))
    return sorted(files)
