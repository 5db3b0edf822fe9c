"""Scale-out the way it is done: nginx balancing three ferrowsgi instances, restarted one at a
time (TERM, wait for the exit, start again on the same port) under continuous load, with not
one failed request.

This is the deployment docs/DEPLOY.md describes ("Several instances behind nginx"): nginx
retries an idempotent request on the next instance when one refuses or drops the connection
(`proxy_next_upstream error timeout`, its default), and ferrowsgi's TERM closes idle
keep-alive connections at once and answers the requests in flight with `Connection: close`,
so nginx never sends a request into a connection the instance is about to close. The load is
bounded (a fixed number of client threads, stopped once the restarts are done) and goes to
127.0.0.1 only.
"""

from __future__ import annotations

import http.client
import signal
import threading

import pytest
from frontends import NGINX, FrontEnd
from support import Server, free_port, wait_until

pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (scripts/setup.sh)")

CONF = """
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream app {{
{servers}
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{nginx_port};
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_next_upstream error timeout;
            proxy_next_upstream_tries 3;
        }}
    }}
}}
"""

CLIENTS = 4


class Balancer(FrontEnd):
    """nginx balancing the instances on ``ports``."""

    name = "nginx"

    def __init__(self, ports: list[int]) -> None:
        super().__init__()
        servers = "\n".join(
            f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=1s;" for p in ports
        )
        self._start_nginx(CONF.format(dir=self.dir, servers=servers, nginx_port=self.port))


class Load:
    """CLIENTS threads sending keep-alive GETs through nginx until stopped."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stop = threading.Event()
        self.ok = 0
        self.failures: list[str] = []
        self.by_instance: dict[str, int] = {}
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(CLIENTS)]

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while not self.stop.is_set():
            try:
                conn.request("GET", "/")
                resp = conn.getresponse()
                body = resp.read()
                with self.lock:
                    if resp.status == 200:
                        self.ok += 1
                        who = body.split(b" ")[0].decode()
                        self.by_instance[who] = self.by_instance.get(who, 0) + 1
                    else:
                        self.failures.append(f"{resp.status} {body[:100]!r}")
            except (OSError, http.client.HTTPException) as e:
                with self.lock:
                    self.failures.append(repr(e))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.close()

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(15)

    def served_by(self, pid: str) -> int:
        with self.lock:
            return self.by_instance.get(pid, 0)

    def count(self) -> int:
        with self.lock:
            return self.ok


@pytest.mark.parametrize("threads", ["1", "4"])
def test_a_rolling_restart_behind_nginx_fails_no_request(threads: str) -> None:
    ports = [free_port() for _ in range(3)]

    def instance(port: int) -> Server:
        return Server(
            "apps.procs:app",
            "--threads",
            threads,
            "--graceful-timeout",
            "10",
            binds=[f"127.0.0.1:{port}"],
        ).start()

    servers = [instance(p) for p in ports]
    nginx = Balancer(ports)
    try:
        with Load(nginx.port) as load:
            assert wait_until(lambda: load.count() >= 200, timeout=30), load.failures[:5]
            for i, port in enumerate(ports):
                before = load.count()
                rc = servers[i].stop(signal.SIGTERM, timeout=15)
                assert rc == 0, f"instance {i} exited with {rc}"
                servers[i] = instance(port)
                # The others carried the load meanwhile. The next instance stops only
                # once this one is back in nginx's rotation (it has served through it),
                # as a rolling restart waits for readiness: nginx leaves an instance
                # that refused a connection out for fail_timeout (1 s here).
                pid = str(servers[i].worker_pid)
                assert wait_until(lambda p=pid: load.served_by(p) >= 50, timeout=30)
                assert load.count() > before
            assert wait_until(lambda: load.count() >= 200, timeout=5)
        assert load.failures == [], (
            len(load.failures),
            load.failures[:3],
            nginx.error_log()[-3000:],
        )
        assert load.ok >= 1000, load.ok
        # Every instance served (the balancing is real), the restarted ones included.
        assert len(load.by_instance) >= 6, load.by_instance
    finally:
        nginx.stop()
        for s in servers:
            s.stop()
