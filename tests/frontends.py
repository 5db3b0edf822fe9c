"""Front-end servers the tests start themselves: Debian's nginx and apache2, each with its
configuration, pid file and logs in a temporary directory, on a free loopback port, in the
foreground, stopped at the end."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

from support import free_port, short_tmp_dir, wait_until

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
APACHE = shutil.which("apache2") or (
    "/usr/sbin/apache2" if os.path.exists("/usr/sbin/apache2") else None
)
APACHE_MODULES = Path("/usr/lib/apache2/modules")


class FrontEnd:
    """A front-end server process with its config and logs in a temporary directory."""

    name = ""

    def __init__(self) -> None:
        self.dir = Path(short_tmp_dir())
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def _start(self, argv: list[str]) -> None:
        with open(self.dir / "stderr.txt", "wb") as err:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err
            )
        self.wait_listening()

    def _start_nginx(self, conf: str) -> None:
        """Writes ``conf`` as nginx.conf and starts Debian's nginx on it."""
        assert NGINX is not None
        (self.dir / "nginx.conf").write_text(conf)
        argv = [NGINX, "-p", str(self.dir), "-c", str(self.dir / "nginx.conf")]
        # -e: the error log from the start, not the distribution's /var/log path.
        self._start([*argv, "-e", str(self.dir / "error.log")])

    def wait_listening(self) -> None:
        def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                err = (self.dir / "stderr.txt").read_text(errors="replace")
                raise AssertionError(
                    f"{self.name} exited with {self.proc.returncode}: {err}{self.error_log()}"
                )
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False

        assert wait_until(up, timeout=15), f"{self.name} did not start listening"

    def error_log(self) -> str:
        path = self.dir / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def errors(self) -> list[str]:
        """Error lines of the front end's log (a backend that answered badly shows here)."""
        return [
            line
            for line in self.error_log().splitlines()
            if "[error]" in line or "[crit]" in line or ":error]" in line or ":crit]" in line
        ]

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
