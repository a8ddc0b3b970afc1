"""``convscope serve`` on a user's model: every shared model option reaches the web app, and the app
answers at the model's input size, with its preprocessing, normalisation and class names (the
matrix in test_model_spec.py only checks that ``serve`` starts on each model)."""

import base64
import io
import time

import torch
from fastapi.testclient import TestClient
from PIL import Image
from torch import nn

from convscope.images import load_image, model_image
from convscope.predictions import predict
from helpers import run_cli

LABELS = ["cat", "cup", "rocket"]


def cifar_net(num_classes: int = 3) -> nn.Module:
    """A CIFAR-style net that only takes 32x32: two conv stages, then flatten + linear on the 8x8 map."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 8 * 8, num_classes),
    )


def size_of(data_uri: str) -> tuple[int, int]:
    return Image.open(io.BytesIO(base64.b64decode(data_uri.split(",", 1)[1]))).size


def test_serve_takes_every_model_option_and_answers_with_the_models_labels(monkeypatch, capsys, tmp_path):
    import uvicorn

    torch.manual_seed(0)
    torch.save(cifar_net().state_dict(), tmp_path / "cifar.pt")
    (tmp_path / "labels.txt").write_text("\n".join(LABELS) + "\n")
    built = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **settings: built.append(app))  # no port is opened
    options = ["-m", str(tmp_path / "cifar.pt"), "--arch", f"{__name__}:cifar_net"]
    options += ["--labels", str(tmp_path / "labels.txt"), "--input-size", "32", "--mean", "0.5", "--std", "0.25"]
    code, _, err = run_cli(monkeypatch, capsys, "serve", *options, "--preprocess", "squash", "--device", "cpu")
    assert code == 0 and len(built) == 1, err
    ((name, model),) = built[0].state.served.loaded.items()
    assert (model.input_size, model.fixed_size, model.preprocess) == (32, True, "squash")
    assert model.labels == LABELS and model.mean == (0.5,) * 3 and model.std == (0.25,) * 3

    with TestClient(built[0], base_url="http://127.0.0.1") as client:
        assert client.get("/api/models").json() == {"models": [name], "default": name}
        layers = client.get("/api/layers").json()  # no model named: the one `serve` opened
        assert (layers["input_size"], layers["preprocess"]) == (32, "squash")
        assert {row["name"] for row in layers["layers"]} >= {"0", "3", "7"}

        # the photo squashed to 32x32, exactly as `convscope predict` and model_image fit it
        x = model_image("sample:chelsea", model)
        assert torch.equal(x, load_image("sample:chelsea", 32, "squash"))
        expected = predict(model, x, 3)[0]
        answer = client.post("/api/predict", json={"image": "sample:chelsea", "topk": 3}).json()["predictions"]
        assert [row["label"] for row in answer] == [p.label for p in expected] and set(LABELS) == {
            row["label"] for row in answer
        }
        assert all(abs(row["probability"] - p.probability) < 1e-6 for row, p in zip(answer, expected))

        explained = client.post("/api/explain", json={"image": "sample:chelsea", "method": "gradcam", "target": 2})
        assert explained.status_code == 200, explained.text
        assert (
            explained.json()["target"] == {"class_id": 2, "label": "rocket"} and explained.json()["layer"] == "4"
        )  # the last conv stage's ReLU
        assert size_of(explained.json()["overlay"]) == (343, 260)  # the 32-px map in the colour-bar tile

        attacked = client.post("/api/attack", json={"image": "sample:chelsea", "method": "fgsm", "eps": 8 / 255})
        assert attacked.status_code == 200, attacked.text
        assert {attacked.json()["before"][0]["label"], attacked.json()["after"][0]["label"]} <= set(LABELS)
        assert all(size_of(attacked.json()[k]) == (32, 32) for k in ("original", "perturbation", "adversarial"))

        status = finished(client, {"image": "sample:chelsea", "kind": "visualize_class", "steps": 2})
        assert status["result"]["label"] == expected[0].label
        # DeepDream's octaves around the fixed 32x32 input, at a layer chosen from this model
        status = finished(client, {"image": "sample:chelsea", "kind": "dream", "steps": 1})
        assert status["result"]["layer"] in {row["name"] for row in layers["layers"]}
        assert size_of(status["result"]["image"]) == (32, 32)


def finished(client, body: dict) -> dict:
    job = client.post("/api/jobs", json=body)
    assert job.status_code == 202, job.text
    deadline = time.monotonic() + 60
    while (status := client.get(f"/api/jobs/{job.json()['id']}").json())["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, status
        time.sleep(0.05)
    assert status["status"] == "done", status
    return status
