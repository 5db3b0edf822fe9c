"""One callable for the reverse-proxy tests: ``/stream/...`` goes to apps.stream (with the
prefix taken off PATH_INFO), everything else to apps.echo."""

from apps import echo, stream


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path.startswith("/stream/"):
        environ["PATH_INFO"] = path[len("/stream") :]
        return stream.app(environ, start_response)
    return echo.app(environ, start_response)
