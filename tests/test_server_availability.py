"""Availability of the web app on a real uvicorn at 127.0.0.1: a long job does not block predicts,
a cancel stops a job within a forward pass, a request whose client left is not computed to the
end, and a request over its time budget stops. Counts of forward passes, not timings, are asserted.
"""

import contextlib
import json
import socket
import threading
import time
from urllib.parse import urlparse

import httpx
import pytest

from convscope.hooks import hook_count
from convscope.server import create_app
from convscope.server.run import running
from convscope.testing import assert_untouched, model_state

NAME = "efficientnet_lite0"


@contextlib.contextmanager
def counted(module, delay: float = 0.0):
    """Count (and optionally slow down) the forward passes of ``module``; the hook is removed on exit."""
    seen = {"passes": 0}

    def hook(_module, _inputs):
        seen["passes"] += 1
        if delay:
            time.sleep(delay)  # a slow model: makes "abandoned mid-way" observable without timing asserts

    handle = module.register_forward_pre_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


def wait_for(condition, limit: float = 120.0, what: str = "condition"):
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def served(model):
    before = model_state(model)
    app = create_app({NAME: model}, max_waiting=8, wait_timeout=60, cache_size=16, max_queued_jobs=2)
    with running(app) as url:
        yield url, app
    assert_untouched(model, before)


def test_a_long_job_does_not_block_predicts_and_a_cancel_stops_it_within_a_pass(served):
    url, app = served
    copy = app.state.job_model(NAME)
    with counted(copy.network) as passes:
        job = httpx.post(f"{url}/api/jobs", json={"image": "sample:chelsea", "kind": "report"}, timeout=30).json()
        wait_for(lambda: passes["passes"] > 0, what="the report job to start")
        answers = [
            httpx.post(f"{url}/api/predict", json={"image": "sample:coffee", "topk": k}, timeout=60) for k in (1, 2, 3)
        ]  # distinct requests: no cache hits
        assert [a.status_code for a in answers] == [200, 200, 200]
        assert all(not a.json()["cached"] for a in answers)
        running_now = httpx.get(f"{url}/api/jobs/{job['id']}", timeout=10).json()
        assert running_now["status"] == "running"  # the predicts were answered while the job ran
        httpx.delete(f"{url}/api/jobs/{job['id']}", timeout=10)
        at_cancel = passes["passes"]
        wait_for(
            lambda: httpx.get(f"{url}/api/jobs/{job['id']}", timeout=10).json()["status"] != "running",
            what="the job to stop",
        )
        final = httpx.get(f"{url}/api/jobs/{job['id']}", timeout=10).json()
        after = passes["passes"] - at_cancel
    assert final["status"] == "cancelled", final
    assert hook_count(copy) == 0  # the job's cancellation hook is gone, nothing was copied in from a request
    assert after <= 1, f"{after} forward passes after the cancel"  # at most the pass already past its check


def _send_and_leave(url: str, body: dict, seen: dict, passes_before_leaving: int) -> None:
    """POST ``body`` to /api/attack on a raw socket and close it once the model has run that many passes."""
    address = urlparse(url)
    data = json.dumps(body).encode()
    with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
        sock.sendall(
            b"POST /api/attack HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data
        )
        wait_for(lambda: seen["passes"] >= passes_before_leaving, what="the computation to start")


def test_requests_whose_client_left_are_not_computed_to_the_end(served, model):
    url, app = served
    # one complete PGD request with the app's settings runs 14 forward passes (10 steps plus the
    # predictions before and after, counted 2026-12-01); 12 is a lower bound
    full = 12
    with counted(model.network, delay=0.1) as seen:
        _send_and_leave(url, {"image": "sample:astronaut", "method": "pgd", "eps": 1 / 255}, seen, 1)
        for eps in (2 / 255, 3 / 255, 4 / 255):  # three more that leave before they are even started
            address = urlparse(url)
            data = json.dumps({"image": "sample:astronaut", "method": "pgd", "eps": eps}).encode()
            with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
                sock.sendall(
                    b"POST /api/attack HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    b"Content-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data
                )
        answer = httpx.post(f"{url}/api/predict", json={"image": "sample:astronaut", "topk": 4}, timeout=60)
        wait_for(
            lambda: app.state.gate.lock.acquire(timeout=0.1) and (app.state.gate.lock.release() or True),
            what="the model to be free",
        )
    assert answer.status_code == 200
    computed = seen["passes"] - 1  # minus the predict
    assert computed < full, f"{computed} passes for 4 abandoned requests (one complete request is {full})"


def test_a_request_over_its_time_budget_stops(model):
    app = create_app({NAME: model}, request_budget=0.3)
    with running(app) as url, counted(model.network, delay=0.1) as seen:
        response = httpx.post(
            f"{url}/api/attack", json={"image": "sample:rocket", "method": "pgd", "eps": 2 / 255}, timeout=60
        )
    assert response.status_code == 503 and "time budget" in response.json()["detail"]
    assert seen["passes"] < 12


def test_a_cancel_during_the_last_step_ends_cancelled():
    from convscope.server.jobs import JobRunner

    runner, submitted, finished = JobRunner(), threading.Event(), threading.Event()
    box = {}

    def work(report):
        report(0.9, "last section")
        submitted.wait(10)
        runner.cancel(box["job"].id)  # after the job's last check, before it returns its result
        finished.set()
        return {"html": "<p>report</p>"}

    box["job"] = runner.submit("report", work)
    submitted.set()
    wait_for(lambda: box["job"].status not in ("queued", "running"), 30, "the job to end")
    runner.stop()
    assert finished.is_set() and box["job"].status == "cancelled" and box["job"].result is None
