"""Reports what the garbage collector sees: the frozen count, and whether a reference
cycle dropped at import time was collected before the first request.

The module turns automatic collection off while it imports, so only a collection the
server makes can free that cycle, and turns it on again before it is done.
"""

import gc
import json
import weakref

gc.disable()


class _Node:
    pass


def _drop_a_cycle() -> weakref.ref:
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return weakref.ref(a)


_import_cycle = _drop_a_cycle()
gc.enable()


def app(environ, start_response):
    # A cycle made per request must still be collected after the freeze.
    request_cycle = _drop_a_cycle()
    gc.collect()
    body = json.dumps(
        {
            "frozen": gc.get_freeze_count(),
            "import_cycle_alive": _import_cycle() is not None,
            "request_cycle_alive": request_cycle() is not None,
            "gc_enabled": gc.isenabled(),
        }
    ).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
