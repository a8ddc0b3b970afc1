"""The web app on a real uvicorn at 127.0.0.1 (random free port): floods and vanishing clients."""

import concurrent.futures
import json
import socket
import time
from urllib.parse import urlparse

import httpx
import pytest

from convscope.commands.serve import is_loopback
from convscope.server import create_app
from convscope.server.run import running
from convscope.testing import assert_untouched, model_state


@pytest.fixture(scope="module")
def live(model):
    before = model_state(model)
    app = create_app(
        {"efficientnet_lite0": model},
        max_waiting=4,
        wait_timeout=30,
        cache_size=8,
        max_queued_jobs=2,
        abandon_after=1.0,
    )
    with running(app) as url:
        yield url, app
    assert_untouched(model, before)


def test_twenty_concurrent_requests_are_answered_or_cleanly_refused(live):
    url, app = live
    samples = ["sample:chelsea", "sample:coffee", "sample:astronaut", "sample:rocket"]

    def ask(i):
        body = {"image": samples[i % 4], "topk": 1 + i}  # distinct requests: no cache hits
        return httpx.post(f"{url}/api/predict", json=body, timeout=60)

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(ask, range(20)))
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 503, 429}, codes
    assert codes.count(200) >= 5  # the model gate admits max_waiting at a time, the rest wait or are refused
    refused = [r for r in responses if r.status_code == 503]
    assert all(r.headers["retry-after"] == "2" and r.json()["detail"].startswith("busy") for r in refused)
    for response in responses:
        if response.status_code == 200:
            assert len(response.json()["predictions"]) == json.loads(response.request.content)["topk"]
    # still up, and memory bounded: the result cache never grows past its size
    health = httpx.get(f"{url}/api/health").json()
    assert health["ok"] and health["cached"] <= 8


def test_clients_that_disconnect_mid_request_do_not_hurt_the_server(live):
    url, _ = live
    host, port = urlparse(url).hostname, urlparse(url).port
    body = b'{"image": "sample:chelsea", "method": "gradcam"}'
    for request in (
        # a whole request, then gone before the answer
        b"POST /api/explain HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body),
        # an upload that stops half way
        b"POST /api/images HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        b'Content-Length: 100000\r\n\r\n--b\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n\x89PNG',
    ):
        with socket.create_connection((host, port)) as connection:
            connection.sendall(request)
    answer = httpx.post(f"{url}/api/predict", json={"image": "sample:chelsea", "topk": 2}, timeout=60)
    assert answer.status_code == 200 and answer.json()["predictions"][0]["label"] == "tiger cat"  # centre-cropped


def test_a_job_whose_client_vanished_is_cancelled(live):
    url, app = live
    job = httpx.post(f"{url}/api/jobs", json={"image": "sample:chelsea", "kind": "dream", "steps": 400}).json()
    # the page is closed: nobody polls any more; after abandon_after (1 s) the worker stops the job
    deadline = time.monotonic() + 60
    while app.state.jobs.get(job["id"], touch=False).status in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.1)
    record = app.state.jobs.get(job["id"], touch=False)
    assert record.status == "cancelled" and record.message.startswith("abandoned")
    assert httpx.get(f"{url}/api/health").json()["ok"]


def test_bound_to_localhost_unless_asked():
    assert all(is_loopback(h) for h in ("127.0.0.1", "localhost", "::1"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "192.168.1.10", "example.org"))
    from convscope.cli import COMMANDS, feature_commands

    serve = feature_commands(COMMANDS["serve"][0])["serve"]
    assert next(param for param in serve.params if param.name == "host").default == "127.0.0.1"
