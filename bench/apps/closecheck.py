"""Whether a server calls the response iterable's close(), as PEP 3333 requires.

Each answer's body is the number of close() calls the server has made so far, so a second
request (on a new connection) answers 0 from a server that never calls it.
"""

closed = [0]


class Body:
    """A one-block iterable with a close() that counts its calls."""

    def __init__(self, block: bytes) -> None:
        self.block = block

    def __iter__(self):
        return iter([self.block])

    def close(self) -> None:
        closed[0] += 1


def app(environ, start_response):
    body = str(closed[0]).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return Body(body)
