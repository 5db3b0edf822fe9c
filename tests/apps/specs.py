"""App-spec resolution: ``application`` wins over ``app``; ``create_app(...)`` is a factory."""

from wsgiref.validate import validator


def _text(text):
    def plain(environ, start_response):
        body = text.encode()
        start_response(
            "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
        )
        return [body]

    return validator(plain)


application = _text("application")
app = _text("app")
other = _text("other")
not_callable = 42


def create_app(greeting="factory", n=1, debug=False):
    return _text(f"{greeting}*{n} debug={debug}")
