"""Fixtures for the ferrowsgi integration tests.

Servers are real ``python -m ferrowsgi`` subprocesses (see ``support.Server``). Behaviour
suites that do not depend on TCP facts run over both transports through the ``transport``
parameter of the module-scoped fixtures (waitress runs its suites over TCP and unix sockets
the same way), and every server of ``module_servers`` runs in both thread modes
(``THREAD_MODES``): the application on the event loop (``--threads 1``) and on a pool of
threads, unless the test asks for a thread count itself.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator

import pytest
from support import Server, short_tmp_dir

TRANSPORTS = ["tcp", "unix"]
# The application on the event loop, and on a pool of threads.
THREAD_MODES = [1, 4]


def bind_for(transport: str, sock_dir: str) -> str:
    if transport == "tcp":
        return "127.0.0.1:0"
    return f"unix:{os.path.join(sock_dir, 'ferrowsgi.sock')}"


class ServerPool:
    """Starts servers on demand and stops them all at teardown."""

    def __init__(self, threads: int = 1) -> None:
        self.servers: list[Server] = []
        self.dirs: list[str] = []
        self.threads = threads  # for servers whose options do not say

    def __call__(
        self, app: str, *options: str, transport: str = "tcp", start: bool = True, **kw: object
    ) -> Server:
        if "binds" not in kw:
            d = short_tmp_dir()
            self.dirs.append(d)
            kw["binds"] = [bind_for(transport, d)]
        if self.threads != 1 and "--threads" not in options:
            options = (*options, "--threads", str(self.threads))
        server = Server(app, *options, **kw)  # type: ignore[arg-type]
        self.servers.append(server)
        if start:
            server.start()
        return server

    def stop_all(self) -> None:
        for s in self.servers:
            s.stop()
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def start_server() -> Iterator[ServerPool]:
    """Function-scoped: ``start_server("apps.echo:app", "--threads", "2")``."""
    pool = ServerPool()
    yield pool
    pool.stop_all()


@pytest.fixture(scope="module", params=THREAD_MODES, ids=lambda t: f"threads{t}")
def module_servers(request: pytest.FixtureRequest) -> Iterator[ServerPool]:
    """Module-scoped servers, in each thread mode of ``THREAD_MODES``."""
    pool = ServerPool(threads=request.param)
    yield pool
    pool.stop_all()


@pytest.fixture(scope="module", params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return request.param


def _module_app(app: str, *options: str) -> Callable[..., Server]:
    @pytest.fixture(scope="module")
    def fixture(module_servers: ServerPool, transport: str) -> Server:
        return module_servers(app, *options, transport=transport)

    return fixture


# One server per module and transport for the common apps.
echo_server = _module_app("apps.echo:app")
raw_echo_server = _module_app("apps.echo:raw_app")
stream_server = _module_app("apps.stream:app")
writecb_server = _module_app("apps.writecb:app")
badcl_server = _module_app("apps.badcl:app")
errors_server = _module_app("apps.errors:app")
closetrack_server = _module_app("apps.closetrack:app")
expect_server = _module_app("apps.expect:app")
counter_server = _module_app("apps.counter:app")
filewrapper_server = _module_app("apps.filewrapper:app")


@pytest.fixture(scope="module")
def echo_tcp(module_servers: ServerPool) -> Server:
    """Echo over TCP only, for facts that only TCP has (ports, addresses)."""
    return module_servers("apps.echo:app")


@pytest.fixture(scope="module")
def slow_server(module_servers: ServerPool) -> Server:
    """Four Python threads, for concurrency and ordering checks."""
    return module_servers("apps.slow:app", "--threads", "4")
