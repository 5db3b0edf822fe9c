from typing import Any, Callable, Iterator, Sequence

__version__: str
HOOK_NAMES: tuple[str, ...]
UNSUPPORTED_HOOK_NAMES: tuple[str, ...]

class Server:
    def __init__(
        self,
        app: Callable[..., Any],
        bind: Sequence[str],
        *,
        threads: int = 1,
        access_log: bool = False,
        debug: bool = False,
        server_header: bool = True,
        log_level: str = "info",
        keep_alive: float = 5.0,
        read_timeout: float = 30.0,
        write_timeout: float = 30.0,
        limit_request_body: int | None = None,
        loopback_congestion: str = "reno",
        stream_bodies: str = "local",
        timeout: float = 30.0,
        timeout_grace: float = 10.0,
    ) -> None: ...
    @property
    def urls(self) -> list[str]: ...
    def serve(self, *, banner: bool = True) -> None: ...
    def stop(self) -> None: ...

class RequestTimeout(BaseException):
    """Raised in a request's thread when the request passed its deadline."""

class FileWrapper:
    def __init__(self, filelike: Any, blksize: int = 8192) -> None: ...
    @property
    def filelike(self) -> Any: ...
    @property
    def blksize(self) -> int: ...
    def __iter__(self) -> Iterator[bytes]: ...
    def __next__(self) -> bytes: ...
    def close(self) -> None: ...

class RequestBodyTooLarge(OSError):
    """Raised by a read of ``wsgi.input`` once the request body goes over
    ``--limit-request-body``; the client then gets 413 and the connection closes,
    unless the response had already started."""

class InputStream:
    def read(self, size: int | None = -1) -> bytes: ...
    def readline(self, size: int | None = -1) -> bytes: ...
    def readlines(self, hint: int | None = -1) -> list[bytes]: ...
    def __iter__(self) -> Iterator[bytes]: ...
    def __next__(self) -> bytes: ...

class ErrorStream:
    def write(self, s: str) -> int: ...
    def writelines(self, lines: Any) -> None: ...
    def flush(self) -> None: ...

class StartResponse:
    def __call__(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Write: ...

class Write:
    def __call__(self, data: bytes) -> None: ...

def main(argv: list[str]) -> int: ...
