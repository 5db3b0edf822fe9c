"""Start a WSGI server that has no command line of its own.

Usage: python launch.py SERVER MODULE:CALLABLE HOST PORT [THREADS]

run.py uses this for bjoern, fastwsgi, meinheld, pyruvate and cheroot; the other
servers are started through their own command lines. THREADS (default 1) is the
number of application threads for the servers that have them (pyruvate, cheroot).
"""

import importlib
import sys


def load(target):
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr or "app")


def main():
    if len(sys.argv) not in (5, 6):
        sys.exit(__doc__)
    server, target, host, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    threads = int(sys.argv[5]) if len(sys.argv) == 6 else 1
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
    elif server == "pyruvate":
        import pyruvate

        # Its defaults: max_reuse_count=0 closes the connection after every response. With
        # keep-alive on (max_reuse_count=255), the second request on a connection went
        # unanswered in our tests, so it runs as it comes.
        pyruvate.serve(app, f"{host}:{port}", threads)
    elif server == "cheroot":
        from cheroot import wsgi

        httpd = wsgi.Server((host, port), app, numthreads=threads, max=threads)
        try:
            httpd.safe_start()
        finally:
            httpd.stop()
    else:
        sys.exit(f"launch.py: unknown server {server!r}")


if __name__ == "__main__":
    main()
