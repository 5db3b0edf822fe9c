"""--metrics-bind and --health-path over real sockets and signals.

The metrics' counts are checked against the requests the test sent (exactly), the text is
read with a strict parser of the exposition format (``promtext``), and the health path is
checked while the server accepts (200) and while it drains after SIGTERM (503).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import time
import urllib.request

import promtext
import pytest
from support import IO_TIMEOUT, RawConn, Server, build_request

HIST = "ferrowsgi_request_duration_seconds"
METRICS_RE = re.compile(r"Metrics at: (http://\S+)")


def metrics_url(server: Server) -> str:
    found = server.stderr_matches(METRICS_RE)
    assert found, server.stderr_text()
    return found[0].group(1)


def scrape(server: Server) -> dict[str, promtext.Family]:
    with urllib.request.urlopen(metrics_url(server), timeout=IO_TIMEOUT) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return promtext.parse(r.read().decode("utf-8"))


def wait_metric(server: Server, predicate, what: str, timeout: float = 10.0):
    """Scrape until ``predicate(families)`` holds; returns the families then."""
    deadline = time.monotonic() + timeout
    while True:
        fams = scrape(server)
        if predicate(fams):
            return fams
        if time.monotonic() > deadline:
            raise AssertionError(f"never saw {what}")
        time.sleep(0.02)


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("PPid:")).split()[1])


def gauge(fams: dict[str, promtext.Family], name: str) -> float:
    return sum(promtext.series(fams, name).values())


@pytest.mark.parametrize("threads", ["1", "4"])
def test_counts_match_the_requests_sent(start_server, threads: str) -> None:
    server = start_server("apps.metered:app", "--threads", threads, "--metrics-bind", "127.0.0.1:0")
    sent = received = 0
    connections = 3
    with server.conn() as a, server.conn() as b:
        for i in range(37):
            req = build_request("GET", f"/item/{i}")
            sent += len(req)
            a.send(req)
            resp = a.read_response()
            assert resp.status == 200
            received += len(resp.raw_head) + len(resp.body)
        for _ in range(5):
            req = build_request("POST", "/missing", body=b"x" * 100)
            sent += len(req)
            b.send(req)
            resp = b.read_response()
            assert resp.status == 404
            received += len(resp.raw_head) + len(resp.body)
    with server.conn() as c:
        # A pipelined pair on the third connection: HEAD and DELETE.
        reqs = build_request("HEAD", "/") + build_request("DELETE", "/")
        sent += len(reqs)
        c.send(reqs)
        for method in ("HEAD", "DELETE"):
            resp = c.read_response(method=method)
            assert resp.status == 200
            received += len(resp.raw_head) + len(resp.body)

    # The last request is counted once its exchange is over, just after its answer left.
    fams = wait_metric(
        server,
        lambda f: (
            promtext.value(
                f, "ferrowsgi_request_duration_seconds", "ferrowsgi_request_duration_seconds_count"
            )
            == 44
        ),
        "44 requests",
    )
    assert promtext.series(fams, "ferrowsgi_requests_rejected_total") == {}
    requests = promtext.series(fams, "ferrowsgi_requests_total")
    assert requests == {
        (("code", "2xx"), ("method", "GET")): 37,
        (("code", "4xx"), ("method", "POST")): 5,
        (("code", "2xx"), ("method", "HEAD")): 1,
        (("code", "2xx"), ("method", "DELETE")): 1,
    }
    hist = "ferrowsgi_request_duration_seconds"
    assert promtext.value(fams, hist, hist + "_bucket", le="+Inf") == 44
    assert promtext.value(fams, hist, hist + "_sum") > 0
    queue = "ferrowsgi_request_queue_seconds"
    assert promtext.value(fams, queue, queue + "_count") == 44
    assert promtext.value(fams, "ferrowsgi_request_bytes_total") == sent
    assert promtext.value(fams, "ferrowsgi_response_bytes_total") == received
    assert promtext.value(fams, "ferrowsgi_connections_total") == connections
    workers = promtext.series(fams, "ferrowsgi_worker_requests_total")
    assert list(workers.values()) == [44]
    (labels,) = workers
    assert dict(labels)["worker"] == "0"
    assert parent_of(int(dict(labels)["pid"])) == server.pid, "a worker of this master"
    assert promtext.value(fams, "ferrowsgi_workers") == 1
    assert gauge(fams, "ferrowsgi_requests_in_flight") == 0
    assert gauge(fams, "ferrowsgi_requests_queued") == 0
    # Every connection is closed; the close is seen by the server at its next event.
    wait_metric(server, lambda f: gauge(f, "ferrowsgi_connections_open") == 0, "all closed")
    gil = "ferrowsgi_gil_wait_seconds"
    assert promtext.value(fams, gil, gil + "_count") > 0
    for cause in ("exit", "signal", "max-requests", "max-rss", "deadline"):
        assert promtext.value(fams, "ferrowsgi_worker_restarts_total", cause=cause) == 0


def test_rejected_requests_are_counted_apart(start_server) -> None:
    server = start_server(
        "apps.metered:app", "--limit-request-line", "100", "--metrics-bind", "127.0.0.1:0"
    )
    for raw, status in (
        (b"GET / HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n", 400),
        (b"GET /" + b"a" * 200 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 200),
    ):
        with server.conn() as c:
            c.send(raw)
            assert c.read_response().status == status
    fams = wait_metric(
        server,
        lambda f: promtext.value(f, "ferrowsgi_requests_total", method="GET", code="2xx") == 1,
        "the good request",
    )
    assert promtext.series(fams, "ferrowsgi_requests_rejected_total") == {(("code", "4xx"),): 2}
    assert promtext.value(fams, HIST, HIST + "_count") == 1, "the application saw one"


def test_gauges_follow_requests_in_flight_and_queued(start_server, tmp_path) -> None:
    server = start_server("apps.metered:app", "--threads", "2", "--metrics-bind", "127.0.0.1:0")
    release = tmp_path / "release"
    conns = [server.conn(timeout=30) for _ in range(3)]
    try:
        for c in conns:
            c.send(build_request("GET", f"/wait?file={release}"))
        # Two application threads take two requests; the third waits in the queue.
        fams = wait_metric(
            server,
            lambda f: (
                gauge(f, "ferrowsgi_requests_in_flight") == 2
                and gauge(f, "ferrowsgi_requests_queued") == 1
            ),
            "2 in flight and 1 queued",
        )
        assert gauge(fams, "ferrowsgi_connections_open") == 3
        release.touch()
        for c in conns:
            assert c.read_response().status == 200
    finally:
        for c in conns:
            c.close()
    fams = wait_metric(
        server,
        lambda f: (
            gauge(f, "ferrowsgi_requests_in_flight") == 0
            and promtext.value(f, "ferrowsgi_requests_total", method="GET", code="2xx") == 3
        ),
        "the three requests over",
    )
    assert gauge(fams, "ferrowsgi_requests_queued") == 0
    queue = "ferrowsgi_request_queue_seconds"
    # The queued request waited at least until the release; the histogram saw it.
    assert promtext.value(fams, queue, queue + "_count") == 3
    assert promtext.value(fams, queue, queue + "_bucket", le="0.00005") < 3


def test_deadlines_reached_are_counted(start_server) -> None:
    server = start_server(
        "apps.metered:app", "--timeout", "1", "--threads", "2", "--metrics-bind", "127.0.0.1:0"
    )
    assert server.request("GET", "/slow?s=5").status == 504
    assert server.request("GET", "/").status == 200
    fams = wait_metric(
        server,
        lambda f: promtext.value(f, "ferrowsgi_deadlines_total") == 1,
        "one deadline reached",
    )
    assert promtext.value(fams, "ferrowsgi_requests_total", method="GET", code="2xx") >= 1


def test_exporter_answers_only_scrapes(start_server) -> None:
    server = start_server("apps.metered:app", "--metrics-bind", "127.0.0.1:0")
    url = metrics_url(server)
    host, port = re.fullmatch(r"http://([\d.]+):(\d+)/metrics", url).groups()
    for req, status in (
        (b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 200),
        (b"GET /?x=1 HTTP/1.1\r\nHost: x\r\n\r\n", 200),
        (b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n", 404),
        (b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405),
    ):
        with RawConn((host, int(port))) as c:
            c.send(req)
            resp = c.read_response()
            assert resp.status == status, req
            assert resp.closes
    # A head that never ends is refused rather than buffered for ever.
    with RawConn((host, int(port))) as c:
        c.send(b"GET /metrics HTTP/1.1\r\n" + b"X-Long: " + b"a" * 9000 + b"\r\n")
        assert c.read_response().status == 431
    # Scrapes do not count as requests of the application.
    fams = scrape(server)
    assert promtext.series(fams, "ferrowsgi_requests_total") == {}


def test_metrics_off_by_default(start_server) -> None:
    server = start_server("apps.metered:app")
    assert server.request("GET", "/").status == 200
    assert "Metrics at" not in server.stderr_text()


@pytest.mark.parametrize(
    ("option", "value", "needle"),
    [
        ("--metrics-bind", "nowhere", "HOST:PORT"),
        ("--metrics-bind", "127.0.0.1", "HOST:PORT"),
        ("--health-path", "healthz", "health path"),
        ("--health-path", "/a b", "health path"),
        ("--health-path", "/h?x=1", "health path"),
    ],
)
def test_bad_values_are_one_line_errors(start_server, option: str, value: str, needle: str) -> None:
    server = start_server("apps.metered:app", option, value, start=False)
    server.start(wait=False)
    assert server.wait_exit() == 2
    err = server.stderr_text().strip()
    assert len(err.splitlines()) == 1, err
    assert needle in err and option in err, err


def test_metrics_port_in_use_is_one_line(start_server) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        server = start_server(
            "apps.metered:app", "--metrics-bind", f"127.0.0.1:{port}", start=False
        )
        server.start(wait=False)
        assert server.wait_exit() == 1
    err = server.stderr_text()
    (line,) = [x for x in err.splitlines() if "error" in x]
    assert f"127.0.0.1:{port}" in line and "metrics" in line, err
    assert "Traceback" not in err


# --------------------------------------------------------------------------------------------
# --health-path


@pytest.mark.parametrize("threads", ["1", "2"])
def test_health_path_is_answered_without_the_application(start_server, threads: str) -> None:
    server = start_server("apps.metered:app", "--threads", threads, "--health-path", "/healthz")
    with server.conn() as c:
        for target in ("/healthz", "/healthz?probe=1"):
            c.request("GET", target)
            resp = c.read_response()
            assert (resp.status, resp.body) == (200, b"ok\n")
            assert resp.header("cache-control") == "no-store"
            assert not resp.closes
        c.request("HEAD", "/healthz")
        resp = c.read_response(method="HEAD")
        assert resp.status == 200 and resp.body == b""
        c.request("POST", "/healthz", body=b"abc")
        resp = c.read_response()
        assert resp.status == 405 and resp.header("allow") == "GET, HEAD"
        # Neighbours of the path reach the application.
        c.request("GET", "/healthzz")
        assert c.read_response().body == b"/healthzz"
        c.request("GET", "/calls")
        assert c.read_response().body == b"2", "only /healthzz and /calls called the app"


def test_health_path_off_by_default(start_server) -> None:
    server = start_server("apps.metered:app")
    resp = server.request("GET", "/healthz")
    assert resp.body == b"/healthz", "the application answers it"


def test_health_path_answers_503_while_draining(start_server, tmp_path) -> None:
    server = start_server(
        "apps.metered:app",
        "--threads",
        "2",
        "--health-path",
        "/healthz",
        "--metrics-bind",
        "127.0.0.1:0",
    )
    release = tmp_path / "release"
    busy = server.conn(timeout=30)
    probe = server.conn(timeout=30)
    try:
        busy.send(build_request("GET", f"/wait?file={release}"))
        # The probe's head arrives in two parts: the first before the stop, so the server has
        # its connection (a connection with nothing on it would close at once on the stop).
        head = build_request("GET", "/healthz")
        probe.send(head[:-2])
        wait_metric(
            server,
            lambda f: (
                gauge(f, "ferrowsgi_requests_in_flight") == 1
                and gauge(f, "ferrowsgi_connections_open") == 2
            ),
            "one request in flight and the probe's connection",
        )
        os.kill(server.pid, signal.SIGTERM)
        assert server.wait_stderr("Shutting down: finishing requests in progress")
        probe.send(head[-2:])
        resp = probe.read_response()
        assert (resp.status, resp.body) == (503, b"draining\n")
        assert resp.closes
        release.touch()
        # The request in flight finishes normally.
        assert busy.read_response().status == 200
    finally:
        busy.close()
        probe.close()
    assert server.wait_exit() == 0


GOOD = """# HELP x_total Things.
# TYPE x_total counter
x_total{a="1"} 3
# HELP h Durations.
# TYPE h histogram
h_bucket{le="0.1"} 1
h_bucket{le="+Inf"} 2
h_sum 0.3
h_count 2
"""


@pytest.mark.parametrize(
    "broken",
    [
        GOOD.replace("x_total", "x"),  # a counter without _total
        GOOD.replace('h_bucket{le="+Inf"} 2', 'h_bucket{le="+Inf"} 0'),  # not cumulative
        GOOD.replace("h_count 2", "h_count 3"),  # +Inf differs from _count
        GOOD.replace('h_bucket{le="+Inf"} 2\n', ""),  # no +Inf bucket
        GOOD + 'x_total{a="1"} 4\n',  # a family split in two
        GOOD.replace('x_total{a="1"} 3', 'x_total{a="1"} 3\nx_total{a="1"} 3'),  # repeated
        GOOD.replace("# TYPE x_total counter\n", "") + "# TYPE x_total counter\n",  # late TYPE
        GOOD.replace("3\n", "three\n", 1),  # not a number
        GOOD.replace('{a="1"}', "{a=1}"),  # unquoted label value
        GOOD[:-1],  # no final newline
    ],
)
def test_the_parser_refuses_broken_text(broken: str) -> None:
    assert promtext.parse(GOOD)
    with pytest.raises(promtext.ExpositionError):
        promtext.parse(broken)


# --------------------------------------------------------------------------------------------
# Several workers: one text from the master, counters that survive a worker


def total_requests(fams: dict[str, promtext.Family]) -> float:
    return sum(promtext.series(fams, "ferrowsgi_requests_total").values())


def test_a_killed_worker_keeps_its_counts_and_counts_as_a_restart(start_server) -> None:
    server = start_server("apps.metered:app", "-w", "2", "--metrics-bind", "127.0.0.1:0")
    fams = wait_metric(server, lambda f: promtext.value(f, "ferrowsgi_workers") == 2, "2 workers")
    for i in range(30):
        assert server.request("GET", f"/n/{i}").status == 200
    fams = wait_metric(server, lambda f: total_requests(f) == 30, "30 requests")
    per_worker = promtext.series(fams, "ferrowsgi_worker_requests_total")
    assert sum(per_worker.values()) == 30
    pids = {int(dict(labels)["pid"]) for labels in per_worker}
    assert len(pids) == 2 and all(parent_of(p) == server.pid for p in pids)
    victim = max(per_worker, key=lambda labels: per_worker[labels])
    victim_pid = int(dict(victim)["pid"])
    os.kill(victim_pid, signal.SIGKILL)
    fams = wait_metric(
        server,
        lambda f: (
            promtext.value(f, "ferrowsgi_worker_restarts_total", cause="signal") == 1
            and promtext.value(f, "ferrowsgi_workers") == 2
        ),
        "the killed worker replaced",
    )
    # The dead worker's requests stay in the totals; its own series is gone.
    assert total_requests(fams) == 30
    assert promtext.value(fams, HIST, HIST + "_count") == 30
    live = promtext.series(fams, "ferrowsgi_worker_requests_total")
    assert str(victim_pid) not in {dict(labels)["pid"] for labels in live}
    for i in range(6):
        assert server.request("GET", f"/m/{i}").status == 200
    fams = wait_metric(server, lambda f: total_requests(f) == 36, "36 requests")
    for cause in ("exit", "max-requests", "max-rss", "deadline"):
        assert promtext.value(fams, "ferrowsgi_worker_restarts_total", cause=cause) == 0


def test_max_requests_restarts_are_counted(start_server) -> None:
    server = start_server(
        "apps.metered:app", "--max-requests", "10", "--metrics-bind", "127.0.0.1:0"
    )
    for i in range(25):
        assert server.request("GET", f"/r/{i}").status == 200
    # A worker past its --max-requests serves on until its replacement is ready, so how many
    # were replaced depends on timing; at least the first was, and every request is counted.
    fams = wait_metric(
        server,
        lambda f: (
            total_requests(f) == 25
            and promtext.value(f, "ferrowsgi_worker_restarts_total", cause="max-requests") >= 1
        ),
        "25 requests and a replaced worker",
    )
    live = promtext.series(fams, "ferrowsgi_worker_requests_total")
    assert sum(live.values()) < 25, "the replaced workers' requests are in the totals"
    assert promtext.value(fams, "ferrowsgi_worker_restarts_total", cause="signal") == 0
    assert promtext.value(fams, "ferrowsgi_worker_restarts_total", cause="exit") == 0


def test_a_reload_keeps_the_counts_and_is_no_restart(start_server) -> None:
    server = start_server("apps.metered:app", "-w", "2", "--metrics-bind", "127.0.0.1:0")
    wait_metric(server, lambda f: promtext.value(f, "ferrowsgi_workers") == 2, "2 workers")
    for i in range(10):
        assert server.request("GET", f"/a/{i}").status == 200
    before = wait_metric(server, lambda f: total_requests(f) == 10, "10 requests")
    old = {
        dict(labels)["pid"] for labels in promtext.series(before, "ferrowsgi_worker_requests_total")
    }
    os.kill(server.pid, signal.SIGHUP)
    # The old workers leave once the new ones serve; their requests stay in the totals.
    fams = wait_metric(
        server,
        lambda f: (
            promtext.value(f, "ferrowsgi_workers") == 2
            and not old
            & {
                dict(labels)["pid"]
                for labels in promtext.series(f, "ferrowsgi_worker_requests_total")
            }
        ),
        "two new workers and the old ones gone",
        timeout=30,
    )
    assert total_requests(fams) == 10
    for cause in ("exit", "signal", "max-requests", "max-rss", "deadline"):
        assert promtext.value(fams, "ferrowsgi_worker_restarts_total", cause=cause) == 0
    assert server.request("GET", "/after").status == 200
    wait_metric(server, lambda f: total_requests(f) == 11, "11 requests")
