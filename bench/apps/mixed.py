"""Half blocking, half framework: ``/sleep`` sleeps 10 ms, anything else is the Flask view."""

import time

from apps.flask_json import app as flask_app


def app(environ, start_response):
    if environ.get("PATH_INFO") == "/sleep":
        time.sleep(0.010)
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return [b"slept"]
    return flask_app(environ, start_response)
