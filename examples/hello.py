"""The example application served by scripts/serve-example.sh."""


def app(environ, start_response):
    """Greet the client and show what the server told the application."""
    lines = [
        "Hello from ferrowsgi!",
        "",
        f"method:  {environ['REQUEST_METHOD']}",
        f"path:    {environ['PATH_INFO']}",
        f"query:   {environ['QUERY_STRING']}",
        f"client:  {environ['REMOTE_ADDR']}:{environ['REMOTE_PORT']}",
        f"server:  {environ['SERVER_SOFTWARE']}",
    ]
    body = ("\n".join(lines) + "\n").encode()
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    return [body]
