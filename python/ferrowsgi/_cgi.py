"""``ferrowsgi cgi APP``: one request from a CGI environment (RFC 3875).

The web server starts the program once per request: the request is in the
environment, its body on stdin, and the response goes to stdout as a CGI
response (a ``Status:`` line, the header fields, a blank line, the body).
The application is loaded as the server loads it and gets the same WSGI
guarantees: ``start_response`` checks status and headers by the server's
rules (the extension's own checks), ``exc_info`` is honoured, the
application's Content-Length is kept to, each block reaches stdout before
the next is asked for, ``close()`` is always called, and an error before the
head is a 500 while one after it cuts the response off.

Stdout is taken for the response before the application is imported, and
file descriptor 1 is pointed at stderr: a ``print()`` in the application
lands in the web server's error log, never inside the response.
"""

from __future__ import annotations

import os
import stat
import sys

from ferrowsgi._ferrowsgi import FileWrapper, check_response_head
from ferrowsgi._loader import AppLoadError, load_app

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing costs every request a few ms of start-up
    from typing import Any, Callable, Iterable

__all__ = ["main"]

USAGE = """\
Usage: ferrowsgi cgi [--chdir DIR] [--pythonpath DIRS] APP

Serve one request from a CGI environment (RFC 3875): the request from the
environment and stdin, the response to stdout. Run it from a CGI script, or
make it a script's first line: #!/path/to/ferrowsgi cgi APP

Arguments:
  APP                pkg.mod:name, pkg.mod, or pkg.mod:create_app(...), as for
                     the server; imported from the current directory

Options:
  --chdir DIR        change to DIR before importing the application
  --pythonpath DIRS  comma-separated directories put first on the module path
  -h, --help         print this help
"""

# Bytes asked of stdin at once: a read of "everything" or of a large size is
# made of reads of this size, so no buffer is sized by the client's length.
_READ_BLOCK = 65536

# Request-body reads of readline() when no newline is buffered yet.
_LINE_BLOCK = 8192

_INTERNAL_ERROR = b"Internal Server Error\n"


class _ClientGone(OSError):
    """The web server stopped reading the response (its client went away). An
    ``OSError``, as the server's ``write()`` raises when its client is gone."""


class _BadRequest(Exception):
    """The CGI environment describes no valid request; the message is one line."""


def _log(level: str, message: str) -> None:
    """One entry of the error log: stderr, which the web server keeps in its own."""
    try:
        sys.stderr.write(f"ferrowsgi: {level}: {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass  # no error log to write to; nothing else to tell


class CgiInput:
    """``wsgi.input`` over the request body on stdin.

    Reads at most ``length`` bytes (the request's CONTENT_LENGTH): RFC 3875
    forbids reading past it, and a web server may keep the pipe open after it,
    so a read past it could wait forever. Every read asks the descriptor for
    no more than what is left. ``length`` None means the web server removed a
    chunked transfer coding and gives no length: the body ends at end of file.
    A body that ends before its CONTENT_LENGTH (the client went away) raises
    ``OSError``, so a cut upload is never taken as whole.
    """

    def __init__(self, fd: int, length: int | None) -> None:
        self._fd = fd
        self._length = length
        # Bytes still to come from the descriptor (None: until end of file).
        self._left = length
        # Bytes read from the descriptor but not handed out yet (readline).
        self._buf = bytearray()
        self._eof = False

    def _fill(self, want: int) -> bytes:
        """One read of at most ``want`` bytes; b"" at the end of the body."""
        n = min(want, _READ_BLOCK)
        if self._left is not None:
            n = min(n, self._left)
        if n <= 0 or self._eof:
            return b""
        data = os.read(self._fd, n)
        if not data:
            self._eof = True
            if self._left:
                got = (self._length or 0) - self._left
                raise OSError(
                    f"the request body ended after {got} of its {self._length} bytes "
                    "(CONTENT_LENGTH); the client went away"
                )
            return b""
        if self._left is not None:
            self._left -= len(data)
        return data

    def _take(self, n: int) -> bytes:
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes (all that is left when ``size`` is None or negative)."""
        if size is None or size < 0:
            parts = [self._take(len(self._buf))]
            while True:
                data = self._fill(_READ_BLOCK)
                if not data:
                    return b"".join(parts)
                parts.append(data)
        parts = [self._take(size)]
        got = len(parts[0])
        while got < size:
            data = self._fill(size - got)
            if not data:
                break
            parts.append(data)
            got += len(data)
        return b"".join(parts)

    def readline(self, size: int | None = -1) -> bytes:
        """One line, with its newline; at most ``size`` bytes when ``size`` >= 0."""
        limit = -1 if size is None else size
        start = 0
        while True:
            nl = self._buf.find(b"\n", start)
            if nl >= 0 and (limit < 0 or nl < limit):
                return self._take(nl + 1)
            if 0 <= limit <= len(self._buf):
                return self._take(limit)
            start = len(self._buf)
            data = self._fill(_LINE_BLOCK)
            if not data:
                return self._take(len(self._buf))
            self._buf += data

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        """The remaining lines; stops once ``hint`` bytes are read when ``hint`` > 0."""
        lines: list[bytes] = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __iter__(self) -> CgiInput:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line


def _body_length(env: dict[str, Any]) -> int | None:
    """The body's length from CONTENT_LENGTH; None for a body that ends at end of file."""
    text = env.get("CONTENT_LENGTH", "")
    if text == "":
        # RFC 3875 sets CONTENT_LENGTH when a body comes with a length. Apache
        # passes a chunked body decoded, with no length, and closes stdin after
        # it: read to the end then, and to nothing otherwise.
        chunked = "chunked" in env.get("HTTP_TRANSFER_ENCODING", "").lower()
        return None if chunked else 0
    if not (text.isascii() and text.isdigit()) or len(text) > 19:
        raise _BadRequest(f"invalid CONTENT_LENGTH {text!r}")
    return int(text)


def _is_https(value: str) -> bool:
    return value.lower() in ("on", "1", "yes")


def cgi_environ(stdin_fd: int = 0) -> dict[str, Any]:
    """The WSGI environ of the request in this process's environment.

    Every variable becomes a native string as PEP 3333 defines it: the bytes
    the web server set, decoded as latin-1. Python decodes ``os.environ`` with
    the filesystem encoding, which would turn a non-ASCII PATH_INFO into
    other characters (or surrogates), so the values are read as bytes.
    """
    environb = getattr(os, "environb", None)
    if environb is not None:
        env: dict[str, Any] = {
            k.decode("latin-1"): v.decode("latin-1") for k, v in environb.items()
        }
    else:
        env = dict(os.environ)
    if "REQUEST_METHOD" not in env:
        raise _BadRequest("not a CGI request: REQUEST_METHOD is not set")
    # PEP 3333: both are present, '' when the web server gave none.
    env.setdefault("SCRIPT_NAME", "")
    env.setdefault("PATH_INFO", "")
    env.setdefault("QUERY_STRING", "")
    length = _body_length(env)
    env["wsgi.version"] = (1, 0)
    env["wsgi.url_scheme"] = "https" if _is_https(env.get("HTTPS", "")) else "http"
    env["wsgi.input"] = CgiInput(stdin_fd, length)
    env["wsgi.errors"] = sys.stderr
    env["wsgi.multithread"] = False
    env["wsgi.multiprocess"] = True
    env["wsgi.run_once"] = True
    env["wsgi.input_terminated"] = True
    env["wsgi.file_wrapper"] = FileWrapper
    return env


def _request_tag(env: dict[str, Any]) -> str:
    """The "METHOD target" of the request, for log lines."""
    target = env.get("REQUEST_URI")
    if not target:
        target = env.get("SCRIPT_NAME", "") + env.get("PATH_INFO", "")
        if env.get("QUERY_STRING"):
            target += "?" + env["QUERY_STRING"]
    return f"{env.get('REQUEST_METHOD', '-')} {target}"


def _not_started() -> AssertionError:
    return AssertionError("the application sent a response body before calling start_response()")


def _as_block(item: object) -> bytes:
    if isinstance(item, bytes):
        return item
    kind = "str" if isinstance(item, str) else "a non-bytes object"
    raise TypeError(f"the application returned {kind} in its response body; WSGI bodies are bytes")


class _Output:
    """The response's descriptor: every write goes to the kernel at once."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        try:
            while view:
                n = os.write(self.fd, view)
                view = view[n:]
        except (BrokenPipeError, ConnectionResetError):
            raise _ClientGone("the web server stopped reading the response") from None


def _response_bytes(status: str, fields: list[tuple[str, str]], body: bytes) -> bytes:
    head = [f"Status: {status}"] + [f"{name}: {value}" for name, value in fields]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def _error_response(status: str, body: bytes) -> bytes:
    fields = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
    ]
    return _response_bytes(status, fields, body)


class _Request:
    """One request: ``start_response``, ``write()`` and the response on its way out."""

    def __init__(self, environ: dict[str, Any], out: _Output) -> None:
        self.environ = environ
        self.out = out
        self.tag = _request_tag(environ)
        # Read now: the application may change its environ.
        self.is_head = environ.get("REQUEST_METHOD") == "HEAD"
        self.status: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.head_sent = False
        # The application's Content-Length, once the head is out.
        self.length: int | None = None
        # Body bytes handed on (for HEAD and bodiless statuses: produced).
        self.sent = 0
        self.cut = False
        self.no_body = False

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        """PEP 3333's ``start_response``, with the server's checks."""
        if exc_info is not None:
            try:
                if self.head_sent:
                    # The head is out, so the error cannot become a new
                    # response: it goes back into the application.
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # no reference cycle through the traceback
        elif self.status is not None:
            raise AssertionError("start_response() called a second time without exc_info")
        check_response_head(status, headers)
        self.status = status
        self.headers = list(headers)
        return self.write

    def write(self, data: bytes) -> None:
        """The ``write()`` callable: ``data`` goes out at once, after the head."""
        if not isinstance(data, bytes):
            raise TypeError("write() takes bytes")
        if self.head_sent:
            self._send_body(data)
        else:
            self._send_head(None, data)

    def _head(self, body_length: int | None) -> bytes:
        """The CGI head; ``body_length`` is the whole body's size when it is known."""
        if self.status is None:
            raise _not_started()
        code = int(self.status[:3])
        bodiless_status = code < 200 or code in (204, 304)
        self.no_body = bodiless_status or self.is_head
        fields = []
        for name, value in self.headers:
            lower = name.lower()
            if lower == "connection":
                # RFC 3875: a script returns no field about the connection to
                # the client, which is the web server's; the one the server
                # accepts from an application (Connection: close) means
                # nothing here.
                continue
            if lower == "content-length" and self.length is None:
                self.length = int(value)
            fields.append((name, value))
        if body_length is not None and self.length is None and not bodiless_status:
            # The whole body is known (a list, or an iterable that ended
            # before its first block): its length is given, as by the server.
            self.length = body_length
            fields.append(("Content-Length", str(body_length)))
        return _response_bytes(self.status, fields, b"")

    def _body(self, block: bytes) -> bytes | memoryview:
        """What of ``block`` goes out, after the Content-Length check."""
        if self.no_body:
            self.sent += len(block)
            return b""
        if self.length is not None:
            left = self.length - self.sent
            if len(block) > left:
                if not self.cut:
                    self.cut = True
                    _log(
                        "warning",
                        f"{self.tag}: application sent more than its Content-Length; cut",
                    )
                block = memoryview(block)[: max(left, 0)]
        self.sent += len(block)
        return block

    def _send_head(self, body_length: int | None, *blocks: bytes) -> None:
        head = self._head(body_length)
        self.head_sent = True
        body = [self._body(b) for b in blocks]
        self.out.write(b"".join([head, *body]))

    def _send_body(self, block: bytes) -> None:
        data = self._body(block)
        if data:
            self.out.write(data)

    def _finish(self) -> None:
        if self.length is not None and not self.no_body and self.sent < self.length:
            _log(
                "warning",
                f"{self.tag}: application sent {self.length - self.sent} bytes less than "
                "its Content-Length",
            )

    def _send_complete(self, blocks: list[bytes]) -> None:
        """Blocks that are all known: one write with a Content-Length."""
        if self.head_sent:
            for b in blocks:
                self._send_body(b)
        else:
            self._send_head(sum(len(b) for b in blocks), *blocks)

    def _send_result(self, result: Iterable[bytes]) -> None:
        if type(result) is FileWrapper and self._send_file(result):
            return
        if type(result) in (list, tuple) or _has_one_item(result):
            self._send_complete([_as_block(b) for b in result])
            self._finish()
            return
        for item in result:
            block = _as_block(item)
            if not block:
                continue
            if self.head_sent:
                self._send_body(block)
            else:
                self._send_head(None, block)
        if not self.head_sent:
            self._send_complete([])
        self._finish()

    def _send_file(self, wrapper: FileWrapper) -> bool:
        """A ``wsgi.file_wrapper`` over a regular file: sendfile(2) from its
        position, with a Content-Length. False to fall back to iteration."""
        f = wrapper.filelike
        try:
            fd = f.fileno()
            st = os.fstat(fd)
        except (AttributeError, OSError, ValueError):
            return False
        if not stat.S_ISREG(st.st_mode):
            return False
        try:
            pos = int(f.tell())
        except (AttributeError, OSError, ValueError):
            pos = 0
        size = max(st.st_size - pos, 0)
        if not self.head_sent:
            self._send_head(size)
        if self.no_body:
            self.sent += size
            self._finish()
            return True
        count = size
        if self.length is not None:
            left = max(self.length - self.sent, 0)
            if count > left:
                self.cut = True
                _log("warning", f"{self.tag}: application sent more than its Content-Length; cut")
                count = left
        offset = pos
        while count > 0:
            try:
                n = os.sendfile(self.out.fd, fd, offset, count)
            except (BrokenPipeError, ConnectionResetError):
                raise _ClientGone("the web server stopped reading the response") from None
            except OSError:
                # An output sendfile(2) cannot write to: read and write.
                n = len(data := os.pread(fd, min(count, _READ_BLOCK), offset))
                if n:
                    self.out.write(data)
            if n == 0:
                break  # the file is shorter than it was
            offset += n
            count -= n
            self.sent += n
        self._finish()
        return True

    def run(self, app: Callable[..., Any]) -> bool:
        """Calls the application and sends its response; False after an application error."""
        result = None
        ok = True
        try:
            result = app(self.environ, self.start_response)
            self._send_result(result)
        except _ClientGone:
            _log("info", f"{self.tag}: client went away during the response")
        except KeyboardInterrupt:
            raise
        except BaseException as e:
            ok = False
            self._fail(e)
        finally:
            if result is not None and type(result) not in (list, tuple):
                self._close(result)
        return ok

    def _close(self, result: object) -> None:
        close = getattr(result, "close", None)
        if close is None:
            return
        try:
            close()
        except Exception as e:
            _log(
                "error",
                f"Error handling request {self.tag} (in close())\n{_traceback(e)}".rstrip(),
            )

    def _fail(self, error: BaseException) -> None:
        _log("error", f"Error handling request {self.tag}\n{_traceback(error)}".rstrip())
        if self.head_sent:
            _log("info", f"{self.tag}: response cut off after an application error")
            return
        try:
            self.out.write(_error_response("500 Internal Server Error", _INTERNAL_ERROR))
        except _ClientGone:
            pass
        self.head_sent = True


def _has_one_item(result: object) -> bool:
    """PEP 3333: an iterable whose len() is 1 is a whole body too."""
    if not hasattr(type(result), "__len__"):
        return False
    try:
        return len(result) == 1  # type: ignore[arg-type]
    except Exception:
        return False


def _traceback(error: BaseException) -> str:
    import traceback  # only after an error: the import costs every request's start-up

    return "".join(traceback.format_exception(type(error), error, error.__traceback__))


def _take_stdout() -> int:
    """A descriptor of its own for the response, with fd 1 pointed at stderr."""
    try:
        sys.stdout.flush()
    except (AttributeError, OSError, ValueError):
        pass
    fd = os.dup(1)
    os.set_inheritable(fd, False)
    os.dup2(2, 1)
    return fd


def _parse(argv: list[str]) -> tuple[str, str | None, list[str]]:
    """APP, --chdir and --pythonpath from ``argv``; the error is one line."""
    app = ""
    chdir: str | None = None
    paths: list[str] = []
    args = list(argv)
    while args:
        arg = args.pop(0)
        name, eq, value = arg.partition("=")
        if name in ("--chdir", "--pythonpath"):
            if not eq:
                if not args:
                    raise _BadRequest(f"{name} needs a value")
                value = args.pop(0)
            if name == "--chdir":
                chdir = value
            else:
                paths.extend(d.strip() for d in value.split(",") if d.strip())
        elif arg.startswith("-") and arg != "-":
            raise _BadRequest(f"unknown option {arg!r} (see ferrowsgi cgi --help)")
        elif app:
            raise _BadRequest(f"unexpected argument {arg!r}: ferrowsgi cgi takes one APP")
        else:
            app = arg
    if not app:
        raise _BadRequest("no application: ferrowsgi cgi APP (see ferrowsgi cgi --help)")
    return app, chdir, paths


def _refuse(message: str, out_fd: int | None, status: str, code: int) -> int:
    """A one-line error on stderr and, under a web server, an error response."""
    _log("error", message)
    if "GATEWAY_INTERFACE" in os.environ:
        body = _INTERNAL_ERROR if status.startswith("500") else (message + "\n").encode()
        try:
            _Output(1 if out_fd is None else out_fd).write(_error_response(status, body))
        except (_ClientGone, OSError):
            pass
    return code


def main(argv: list[str]) -> int:
    """Runs ``ferrowsgi cgi`` with the arguments after ``cgi``; returns the exit status.

    0 when the application's response went out whole; 1 after an application
    error (answered with a 500 when nothing had been sent) or when the
    application cannot be loaded (a 500 under a web server); 2 for a wrong
    command line or a request that is not a CGI one.
    """
    if any(a in ("-h", "--help") for a in argv):
        sys.stdout.write(USAGE)
        return 0
    try:
        spec, chdir, paths = _parse(argv)
    except _BadRequest as e:
        return _refuse(str(e), None, "500 Internal Server Error", 2)
    out_fd = _take_stdout()
    try:
        env = cgi_environ()
    except _BadRequest as e:
        # A variable the web server would never set this way; without
        # REQUEST_METHOD, not a CGI request at all.
        status = "400 Bad Request"
        if "GATEWAY_INTERFACE" not in os.environ:
            _log("error", str(e))
            return 2
        return _refuse(str(e), out_fd, status, 2)
    if chdir is not None:
        try:
            os.chdir(chdir)
        except OSError as e:
            return _refuse(
                f"cannot change to directory {chdir}: {e}", out_fd, "500 Internal Server Error", 1
            )
    # The application is imported from the current directory (a CGI
    # script's own, as web servers start it there), as the server does.
    sys.path[:0] = [*reversed(paths), os.getcwd()]
    try:
        app = load_app(spec)
    except AppLoadError as e:
        return _refuse(str(e), out_fd, "500 Internal Server Error", 1)
    ok = _Request(env, _Output(out_fd)).run(app)
    return 0 if ok else 1
