"""Serving until Ctrl-C or SIGTERM.

The server runs on its own thread; the main thread only waits. Python runs
signal handlers on the main thread alone, so Ctrl-C interrupts this wait and
never lands inside application code as a ``KeyboardInterrupt``. SIGTERM is
made to behave like Ctrl-C (a graceful stop) unless the application
installed a handler of its own, and SIGINT stops the server even when the
process was started with it ignored (a background job of a shell script).
SIGUSR1 reopens the log files (after logrotate moved them).
"""

from __future__ import annotations

import signal
import threading

from ferrowsgi._ferrowsgi import Server, reopen_logs

__all__ = ["run_until_signal"]


def run_until_signal(server: Server, *, banner: bool = True) -> None:
    """Serve ``server`` until Ctrl-C or SIGTERM, then stop it gracefully.

    Requests in progress finish before this returns. Errors of the server
    itself are raised here.
    """
    failure: list[BaseException] = []
    done = threading.Event()

    def serve() -> None:
        try:
            server.serve(banner=banner)
        except BaseException as e:  # re-raised on the calling thread
            failure.append(e)
        finally:
            done.set()

    in_main = threading.current_thread() is threading.main_thread()
    old_term = old_int = None
    if in_main and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        old_term = signal.signal(signal.SIGTERM, signal.default_int_handler)
    if in_main and signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        # Started as a background job of a non-interactive shell, which
        # ignores SIGINT for its children: a server still stops on it (as
        # gunicorn and uvicorn do), or `kill -INT` would do nothing.
        old_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    old_usr1 = None
    if in_main and signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL:
        old_usr1 = signal.signal(signal.SIGUSR1, _reopen_logs)
    thread = threading.Thread(target=serve, name="ferrowsgi-server")
    try:
        started = False
        while not started or thread.is_alive():
            # Every wait is short and inside the try, so a Ctrl-C or SIGTERM
            # at any moment (even while the thread starts) stops gracefully;
            # a second one changes nothing.
            try:
                if not started:
                    started = True
                    thread.start()
                done.wait(1.0)
            except KeyboardInterrupt:
                server.stop()
        thread.join()
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
        if old_int is not None:
            signal.signal(signal.SIGINT, old_int)
        if old_usr1 is not None:
            signal.signal(signal.SIGUSR1, old_usr1)
    if failure:
        raise failure[0]


def _reopen_logs(signum: int, frame: object) -> None:
    """SIGUSR1: reopen the log files; a failure is logged, not raised."""
    try:
        reopen_logs()
    except OSError:
        pass  # already written to the error log by the server
