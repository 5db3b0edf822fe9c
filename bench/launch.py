"""Start a WSGI server that has no command line of its own.

Usage: python launch.py SERVER MODULE:CALLABLE HOST PORT

run.py uses this for bjoern, fastwsgi and meinheld; the other servers are started
through their own command lines.
"""

import importlib
import sys


def load(target):
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr or "app")


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    server, target, host, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    app = load(target)
    if server == "bjoern":
        import bjoern

        bjoern.run(app, host, port)
    elif server == "fastwsgi":
        import fastwsgi

        fastwsgi.run(wsgi_app=app, host=host, port=port, workers=1)
    elif server == "meinheld":
        from meinheld import server as meinheld_server

        meinheld_server.listen((host, port))
        meinheld_server.run(app)
    else:
        sys.exit(f"launch.py: unknown server {server!r}")


if __name__ == "__main__":
    main()
