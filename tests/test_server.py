"""The web app's HTTP API through FastAPI's TestClient: real model, real photos, abuse cases."""

import base64
import hashlib
import io
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from convscope.images import model_image, to_uint8
from convscope.predictions import predict
from convscope.server import create_app
from convscope.server.jobs import JobRunner, QueueFull
from convscope.testing import assert_untouched, model_state


def png_of(image) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(image)).save(buffer, format="PNG")
    return buffer.getvalue()


def decode(data_uri: str) -> Image.Image:
    assert data_uri.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(data_uri.split(",", 1)[1])))


@pytest.fixture(scope="module")
def state(model):
    return model_state(model)


@pytest.fixture(scope="module")
def client(model, state):
    app = create_app({"efficientnet_lite0": model}, max_upload_bytes=2**20, max_queued_jobs=2)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield client
    assert_untouched(model, state)  # every request left the user's model as it was


def test_openapi_documents_the_api_the_page_uses(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/api/models",
        "/api/samples",
        "/api/methods",
        "/api/images",
        "/api/layers",
        "/api/predict",
        "/api/explain",
        "/api/attack",
        "/api/jobs",
        "/api/jobs/{job_id}",
    ):
        assert path in paths
    script = client.get("/static/app.js").text
    assert all(
        f'"{path}' in script or f"`{path}" in script
        for path in (
            "/api/models",
            "/api/samples",
            "/api/methods",
            "/api/images",
            "/api/predict",
            "/api/explain",
            "/api/attack",
            "/api/jobs",
        )
    )
    page = client.get("/")
    assert page.status_code == 200 and 'src="/static/app.js"' in page.text


def test_upload_predict_and_cache_by_input_hash(client, chelsea):
    data = png_of(chelsea)
    uploaded = client.post("/api/images", files={"file": ("chelsea.png", data, "image/png")})
    assert uploaded.status_code == 201
    assert uploaded.json() == {"id": hashlib.sha256(data).hexdigest(), "width": 224, "height": 224, "bytes": len(data)}
    first = client.post("/api/predict", json={"image": uploaded.json()["id"]}).json()
    assert first["cached"] is False
    top = first["predictions"][0]
    assert (top["class_id"], top["label"]) == (285, "Egyptian cat") and abs(top["probability"] - 0.793) < 0.01
    again = client.post("/api/predict", json={"image": uploaded.json()["id"]}).json()
    assert again["cached"] is True and again["predictions"] == first["predictions"]
    sample = client.post("/api/predict", json={"image": "sample:coffee", "topk": 3}).json()["predictions"]
    assert len(sample) == 3 and sample[0]["label"] == "espresso"


def test_images_are_fitted_to_the_model_as_the_cli_and_load_image_fit_them(client, model):
    # the whole 451x300 photo: the app centre-crops it like `convscope predict` and model_image
    # (Resize(256) + CenterCrop(224)); squashed to 224x224 it would be Egyptian cat p = 0.793
    from skimage import data as samples

    whole = samples.chelsea()
    buffer = io.BytesIO()
    Image.fromarray(whole).save(buffer, format="PNG")
    uploaded = client.post("/api/images", files={"file": ("chelsea.png", buffer.getvalue(), "image/png")}).json()
    assert (uploaded["width"], uploaded["height"]) == (451, 300)
    expected = predict(model, model_image("sample:chelsea", model), 3)[0]
    for image in (uploaded["id"], "sample:chelsea"):
        answer = client.post("/api/predict", json={"image": image, "topk": 3}).json()["predictions"]
        assert [row["class_id"] for row in answer] == [p.class_id for p in expected] == [282, 285, 281]
        assert all(abs(row["probability"] - p.probability) < 1e-6 for row, p in zip(answer, expected))
    assert abs(expected[0].probability - 0.390) < 0.01  # tiger cat


def test_layers_with_shapes_and_receptive_fields(client):
    layers = {row["name"]: row for row in client.get("/api/layers").json()["layers"]}
    assert layers["bn2"]["shape"] == [1280, 7, 7] and layers["bn2"]["unusable"] is None
    assert layers["classifier"]["unusable"] == "no spatial map (output 1000)"
    # the 3x3 stride-2 stem sees 3 pixels, 2 apart; the last layer's units are 32 pixels apart (5 stride-2 stages)
    assert layers["conv_stem"]["receptive_field"]["size"] == [3, 3] and layers["conv_stem"]["receptive_field"][
        "jump"
    ] == [2, 2]
    assert layers["bn2"]["receptive_field"]["jump"] == [32, 32] and layers["bn2"]["receptive_field"]["size"][0] > 224


def test_explain_returns_an_overlay_for_the_predicted_class(client):
    methods = client.get("/api/methods").json()
    assert "gradcam" in methods["attribution"] and "fgsm" in methods["attack"] and "report" in methods["jobs"]
    result = client.post("/api/explain", json={"image": "sample:chelsea", "method": "gradcam"}).json()
    # the centre-cropped photo (the app fits images as the CLI does): tiger cat, 0.39 (squashed: Egyptian cat)
    assert result["target"] == {"class_id": 282, "label": "tiger cat"} and result["layer"] == "bn2"
    # the report's tile: the map over the image with its colour bar (2.6 in at 100 dpi)
    tile = np.asarray(decode(result["overlay"]).convert("RGB")).astype(int)
    assert tile.shape[1] > tile.shape[0] > 224
    bar = tile[tile.shape[0] // 2 - 40 : tile.shape[0] // 2 + 40, int(tile.shape[1] * 0.8) :]
    assert ((bar.max(-1) - bar.min(-1)) > 100).any(-1).all()  # jet (max - min >= 127) on the right, every row
    other = client.post(
        "/api/explain", json={"image": "sample:chelsea", "method": "gradcam", "layer": "blocks.5", "target": 281}
    ).json()
    assert other["layer"] == "blocks.5" and other["target"]["label"] == "tabby"
    assert other["overlay"] != result["overlay"]


def test_attack_confidences_move_with_eps(client):
    none = client.post("/api/attack", json={"image": "sample:chelsea", "method": "fgsm", "eps": 0}).json()
    assert none["after"] == none["before"] and none["success"] is False
    strong = client.post("/api/attack", json={"image": "sample:chelsea", "method": "fgsm", "eps": 4 / 255}).json()
    assert strong["before"][0]["label"] == "tiger cat"  # centre-cropped chelsea (squashed: Egyptian cat)
    assert strong["success"] is True and strong["after"][0]["label"] != "tiger cat"
    assert abs(strong["linf"] - 4 / 255) < 1e-6
    assert all(decode(strong[k]).size == (224, 224) for k in ("original", "perturbation", "adversarial"))


def test_upload_over_the_limit_is_413(client):
    big = b"\x89PNG" + bytes(2**20)
    response = client.post("/api/images", files={"file": ("big.png", big, "image/png")})
    assert response.status_code == 413 and "limit" in response.json()["detail"]

    def chunks():  # no Content-Length: counted while it streams in
        yield b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n'
        for _ in range(20):
            yield bytes(100_000)

    response = client.post("/api/images", content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"})
    assert response.status_code == 413


def test_decompression_bomb_is_413():
    app = create_app({}, allowed_models=["efficientnet_lite0"], max_pixels=10_000)
    buffer = io.BytesIO()
    Image.new("RGB", (200, 200)).save(buffer, format="PNG")
    with TestClient(app, base_url="http://127.0.0.1") as small:
        response = small.post("/api/images", files={"file": ("a.png", buffer.getvalue(), "image/png")})
    assert response.status_code == 413 and "200x200 = 40,000 pixels; the limit is 10,000" in response.json()["detail"]


@pytest.mark.parametrize("content", [b"#!/bin/sh\nrm -rf /\n", b"\x89PNG\r\n\x1a\n truncated", b""])
def test_a_non_image_with_an_image_name_is_415(client, content):
    response = client.post("/api/images", files={"file": ("cat.jpg", content, "image/jpeg")})
    assert response.status_code == 415 and "not a readable image" in response.json()["detail"]


@pytest.mark.parametrize(
    "field, value",
    [
        ("model", "../../etc/passwd"),
        ("model", "/etc/passwd"),
        ("image", "../../../etc/passwd"),
        ("image", "sample:../../etc/passwd"),
        ("image", "/dev/zero"),
        ("layer", "../../etc/passwd"),
        ("method", "../../etc/passwd"),
    ],
)
def test_path_traversal_in_name_parameters_is_refused(client, field, value):
    body = {"image": "sample:chelsea", "method": "gradcam", field: value}
    response = client.post("/api/explain", json=body)
    assert response.status_code in (404, 422)
    assert "root:" not in response.text


@pytest.mark.parametrize(
    "path",
    [
        "/static/../../../../etc/passwd",
        "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/static/..%2f..%2f..%2fetc%2fpasswd",
        "/api/jobs/..%2f..%2fetc%2fpasswd",
        "/api/layers?model=..%2F..%2Fetc%2Fpasswd",
    ],
)
def test_path_traversal_in_urls_is_refused(client, path):
    response = client.get(path)
    assert response.status_code in (400, 404) and "root:" not in response.text


def test_upload_names_never_become_files(client, chelsea, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    response = client.post("/api/images", files={"file": ("../../../tmp/evil.png", png_of(chelsea), "image/png")})
    assert response.status_code == 201
    assert list(tmp_path.iterdir()) == [] and response.json()["id"] == hashlib.sha256(png_of(chelsea)).hexdigest()


def test_long_jobs_report_progress_finish_and_cancel(client):
    started = client.post(
        "/api/jobs", json={"image": "sample:chelsea", "kind": "visualize_class", "steps": 2, "target": 285}
    )
    assert started.status_code == 202
    job = wait_for(client, started.json()["id"])
    assert job["status"] == "done" and job["progress"] == 1.0
    assert job["result"]["label"] == "Egyptian cat" and decode(job["result"]["image"]).size == (112, 112)

    long = client.post("/api/jobs", json={"image": "sample:chelsea", "kind": "dream", "steps": 500}).json()
    time.sleep(0.5)
    assert client.delete(f"/api/jobs/{long['id']}").status_code == 200
    job = wait_for(client, long["id"])
    assert job["status"] == "cancelled" and job["progress"] < 0.5
    assert client.get("/api/jobs/nosuchjob").status_code == 404
    assert client.post("/api/jobs", json={"image": "sample:chelsea", "kind": "../report"}).status_code == 404


def wait_for(client, job_id, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def test_job_runner_queue_limit_cancel_and_abandon():
    runner = JobRunner(max_queued=1, abandon_after=0.3)

    def slow(report):
        for step in range(200):
            report(step / 200, f"step {step}")
            time.sleep(0.01)
        return {"steps": 200}

    first = runner.submit("slow", slow)
    time.sleep(0.1)
    waiting = runner.submit("slow", slow)  # the one queued slot
    with pytest.raises(QueueFull):
        runner.submit("slow", slow)
    runner.cancel(waiting.id)
    assert waiting.status == "cancelled"
    # nobody polls `first`: after 0.3 s it is abandoned, and the worker is free again
    deadline = time.monotonic() + 10
    while runner.get(first.id, touch=False).status == "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert first.status == "cancelled" and first.message.startswith("abandoned")

    def failing(report):
        raise RuntimeError("boom")

    broken = runner.submit("failing", failing)
    deadline = time.monotonic() + 10
    while runner.get(broken.id).status in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert broken.status == "failed" and broken.message == "RuntimeError: boom"
    runner.stop()
