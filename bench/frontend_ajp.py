"""The hello app behind Apache's mod_proxy_ajp: ``python bench/frontend_ajp.py [--rounds 3]
[--duration 8] [--connections 16]``.

Apache (Debian's apache2, event MPM, started with a config in a temporary directory)
passes every request to the backend with ``ProxyPass / ajp://…/`` over pooled AJP
connections. The method (pinning, rounds, the CPU per request, the table) is
bench/frontends.py's; Apache's error lines count as errors.

Backends, all serving bench/apps/hello.py:
* ferrowsgi ``--bind ajp://127.0.0.1:PORT``
* flup's ``flup.server.ajp.WSGIServer`` (``maxThreads=16``), the one other WSGI server that
  speaks AJP13

flup is taken from the interpreter running this script (``pip install flup``); without it
ferrowsgi runs alone.
"""

from __future__ import annotations

from frontends import Case, apache, compare, ferrowsgi, flup


def main() -> None:
    backends = {"ferrowsgi": ferrowsgi("ajp"), "flup": flup("ajp", maxThreads=16)}
    compare(__doc__, Case("AJP13", apache("ajp"), backends))


if __name__ == "__main__":
    main()
