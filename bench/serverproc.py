"""One ferrowsgi server process for the bench scripts (soak, uploads).

It starts ``python -m ferrowsgi APP --bind 127.0.0.1:0 [ARGS]`` with its
stderr in a log file, finds the port in the ``Listening at:`` line, reads
the process's memory and descriptors from /proc, and stops it with SIGINT
(then SIGKILL).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
HOST = "127.0.0.1"


class ServerProc:
    def __init__(self, app: str, args: list[str], log_path: Path, who: str) -> None:
        self.log_path = log_path
        self.log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        cmd = [sys.executable, "-m", "ferrowsgi", app, "--bind", f"{HOST}:0", *args]
        env = dict(os.environ, PYTHONPATH=str(BENCH_DIR))
        self.proc = subprocess.Popen(
            cmd,
            cwd=BENCH_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        self.port = self._wait_port(who)

    def _wait_port(self, who: str) -> int:
        deadline = time.monotonic() + 20
        for _ in range(1000):
            m = re.search(
                r"Listening at: http(?:\+proxy)?://[\d.]+:(\d+)", self.log_path.read_text()
            )
            if m:
                return int(m.group(1))
            if self.proc.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.stop()
        raise SystemExit(f"{who}: the server did not start:\n{self.log_path.read_text()}")

    def status(self, key: str) -> int:
        """A field of /proc/PID/status in kB (VmRSS, VmHWM, ...), -1 if absent."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        return -1

    def rss_mib(self) -> float:
        return self.status("VmRSS") / 1024

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(35)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()
        return self.proc.returncode
