"""An application whose module installs gunicorn-style server hooks (as a configuration
module would); each hook appends ``name pid [worker.age]`` to the file in ``HOOKS_LOG``.
Meant for ``--preload``, where the module is imported by the master before it forks."""

import os

from ferrowsgi import _hooks

_log = os.environ["HOOKS_LOG"]


def _record(name, worker=None):
    line = f"{name} {os.getpid()}" + (f" {worker.age} {worker.pid}" if worker else "")
    with open(_log, "a") as f:
        f.write(line + "\n")


_hooks.install(
    {
        "when_ready": lambda server: _record("when_ready"),
        "post_fork": lambda server, worker: _record("post_fork", worker),
        "post_worker_init": lambda worker: _record("post_worker_init", worker),
        "worker_exit": lambda server, worker: _record("worker_exit", worker),
        "on_exit": lambda server: _record("on_exit"),
        "on_reload": lambda server: _record("on_reload"),
        "child_exit": lambda server, worker: _record("child_exit", worker),
        "worker_int": lambda worker: _record("worker_int", worker),
        "nworkers_changed": lambda server, new, old: _record(f"nworkers_changed:{old}:{new}"),
    }
)


def app(environ, start_response):
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
