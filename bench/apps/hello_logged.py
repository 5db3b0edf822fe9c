"""``hello`` with Python's logging set up to take ferrowsgi's access records, for measuring
``--log-to-python``: the ``ferrowsgi`` loggers write each record's message to a file (by
default /dev/null; ``$HELLO_LOG`` names another), as an application's logging set-up would."""

import logging
import os

from apps.hello import app

_handler = logging.FileHandler(os.environ.get("HELLO_LOG", os.devnull))
_handler.setFormatter(logging.Formatter("%(message)s"))
_logger = logging.getLogger("ferrowsgi")
_logger.addHandler(_handler)
_logger.setLevel(logging.INFO)
_logger.propagate = False

__all__ = ["app"]
