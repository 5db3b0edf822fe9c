"""Applications that say who they are and where they were mounted, for the mounting tests.

Each answers with JSON: its ``name``, ``SCRIPT_NAME``, ``PATH_INFO`` and ``REQUEST_URI``. The
module-level names are the ones ``--mount`` refers to; ``app`` is the same set joined in a
``ferrowsgi.Mount`` (with a nested one), so the Python dispatcher can be served as the one
application of a server and compared with the command line's.
"""

import json
from wsgiref.validate import validator

from ferrowsgi import Mount


def _named(name):
    def where(environ, start_response):
        body = json.dumps(
            {
                "name": name,
                "script_name": environ["SCRIPT_NAME"],
                "path_info": environ["PATH_INFO"],
                "request_uri": environ.get("REQUEST_URI"),
            }
        ).encode()
        start_response(
            "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        )
        return [body]

    where.__name__ = name
    return validator(where)


site = _named("site")
api = _named("api")
api_v2 = _named("api_v2")
admin = _named("admin")
inner = _named("inner")
inner_root = _named("inner_root")

#: ``/nest`` is itself a Mount: ``/nest/in`` reaches ``inner``, the rest of ``/nest`` its root.
nested = Mount({"/in": inner, "": inner_root})

app = validator(Mount({"/api": api, "/api/v2": api_v2, "/admin": admin, "/nest": nested, "": site}))

#: The same without a root application: unmatched paths are a 404.
rootless = validator(Mount({"/api": api, "/admin": admin}))
