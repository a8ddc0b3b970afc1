"""No file makes convscope run code; no image stalls it; the web app answers only its own host and origin.

Each malicious file carries a payload that would write a marker file if it ran (a pickle whose
``__reduce__`` calls ``exec``, or a ``module:callable`` builder in a module on ``sys.path``);
every loading path must refuse it with a one-line :class:`ConvscopeError` and the marker must
not exist afterwards.
"""

import importlib
import io
import struct
import sys
import zlib

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from convscope.cli import app as cli_app
from convscope.dissect.examples import load_examples, state_from_bytes, top_k_examples
from convscope.errors import ConvscopeError
from convscope.images import ImageTooLarge, load_image, read_image_file, resize
from convscope.models import load_model, load_weights, read_checkpoint
from convscope.server import create_app


class _Payload:
    """Unpickling this runs ``exec(code)`` (the classic pickle attack)."""

    def __init__(self, marker):
        self.code = f"open({str(marker)!r}, 'w').write('ran')"

    def __reduce__(self):
        return exec, (self.code,)


def _pickle_bomb(path, marker, wrap=lambda payload: payload):
    torch.save(wrap(_Payload(marker)), path)
    return path


def _one_line_refusal(call):
    with pytest.raises(ConvscopeError) as caught:
        call()
    message = str(caught.value)
    assert message and "\n" not in message
    return message


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "payload-ran"
    yield path
    assert not path.exists(), "the payload ran"


# ------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize(
    "wrap",
    [lambda p: p, lambda p: {"state_dict": p}, lambda p: {"weight": torch.zeros(1), "x": p}],
    ids=["bare", "state_dict", "mixed"],
)
def test_pickled_payloads_are_refused_by_every_model_source(tmp_path, marker, wrap):
    bomb = _pickle_bomb(tmp_path / "evil.pt", marker, wrap)
    assert "trust" in _one_line_refusal(lambda: load_model(str(bomb)))
    _one_line_refusal(lambda: load_model(str(bomb), arch="torch.nn:Identity"))
    _one_line_refusal(lambda: load_model("torchvision:resnet18", weights=bomb))
    _one_line_refusal(lambda: load_model("timm:resnet18", weights=bomb))
    _one_line_refusal(lambda: read_checkpoint(bomb))
    _one_line_refusal(lambda: load_weights(torch.nn.Linear(2, 2), bomb))  # transfer / training checkpoints


def test_training_checkpoint_of_defenses_is_refused(tmp_path, marker):
    bomb = _pickle_bomb(tmp_path / "digits.pt", marker, lambda p: {"state_dict": p, "history": []})
    result = CliRunner().invoke(cli_app, ["defenses", "digits", "--checkpoint", str(bomb), "--limit", "4"])
    assert isinstance(result.exception, ConvscopeError) and "\n" not in str(result.exception)


def test_example_checkpoints_never_unpickle(tmp_path, marker, model):
    bomb = _pickle_bomb(tmp_path / "examples.safetensors", marker, lambda p: {"fingerprint": "x", "state": p})
    assert "pickled checkpoints are refused" in _one_line_refusal(lambda: load_examples(bomb))
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    _one_line_refusal(lambda: top_k_examples(model, images, "blocks.1", k=1, size=32, checkpoint=bomb, progress=False))
    _one_line_refusal(lambda: state_from_bytes(bomb.read_bytes(), "a Ray shard"))
    # the CLI finds the crafted file where it keeps its checkpoint
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("RGB", (40, 40), (200, 10, 10)).save(folder / "a.png")
    out = tmp_path / "site"
    out.mkdir()
    (out / "examples-checkpoint.safetensors").write_bytes(bomb.read_bytes())
    result = CliRunner().invoke(
        cli_app,
        [
            "atlas",
            str(folder),
            "--layer",
            "blocks.1",
            "--out",
            str(out),
            "--size",
            "32",
            "--k",
            "1",
            "--channels",
            "0",
            "--device",
            "cpu",
        ],
    )
    assert isinstance(result.exception, ConvscopeError) and "\n" not in str(result.exception)


def test_example_checkpoint_round_trip_is_data_only(tmp_path, model):
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    path = tmp_path / "examples.safetensors"
    found = top_k_examples(model, images, ["blocks.1", "blocks.3"], k=2, size=32, checkpoint=path, progress=False)
    again = load_examples(path, images)
    for name in ("blocks.1", "blocks.3"):
        assert torch.equal(again[name].indices, found[name].indices)
        assert torch.equal(again[name].positions, found[name].positions)
        assert again[name].field == found[name].field
    data = path.read_bytes()  # safetensors: 8-byte header length, a JSON header, raw tensor bytes; no pickle
    assert data[8:9] == b"{" and b"\x80\x02" not in data[:16] and not data.startswith(b"PK")


@pytest.fixture
def evil_builder(tmp_path, monkeypatch, marker):
    """A module on sys.path whose ``build`` would write the marker: what 'os:abort' is to a real attack."""
    (tmp_path / "convscope_evil_builder.py").write_text(
        f"def build(*a, **k):\n    open({str(marker)!r}, 'w').write('ran')\n    raise SystemExit(3)\n"
    )
    # not monkeypatch.syspath_prepend: it calls pkg_resources, which the imagecorruptions shim replaces
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    importlib.invalidate_caches()
    yield "convscope_evil_builder:build"
    sys.modules.pop("convscope_evil_builder", None)


@pytest.mark.parametrize("command", ["eval", "predict"])
def test_segmentation_checkpoint_cannot_name_a_builder(tmp_path, evil_builder, command):
    from convscope.segmentation import build_segmenter

    from convscope.segmentation.checkpoint import save_segmenter

    net = build_segmenter("unet", 3)
    for backbone in (evil_builder, "os:abort", str(tmp_path / "model.pt")):
        checkpoint = save_segmenter(net, tmp_path / "seg.safetensors", "fcn8s", ["a", "b", "c"], 32, backbone)
        extra = ["generated:scenes", "--count", "2"] if command == "eval" else ["sample:chelsea"]
        result = CliRunner().invoke(
            cli_app,
            [
                "segment",
                command,
                str(checkpoint),
                *extra,
                "--device",
                "cpu",
                "--out" if command == "predict" else "--seed",
                *([str(tmp_path / "o.png")] if command == "predict" else ["1"]),
            ],
        )
        assert isinstance(result.exception, ConvscopeError), result.output
        assert "not a known model name" in str(result.exception) and "\n" not in str(result.exception)
        assert "convscope_evil_builder" not in sys.modules


def test_segmentation_checkpoint_pickle_and_bad_arch(tmp_path, marker):
    import json

    from convscope.segmentation import build_segmenter
    from convscope.segmentation.checkpoint import load_segmenter, save_segmenter

    bomb = _pickle_bomb(
        tmp_path / "seg.pt", marker, lambda p: {"state_dict": p, "arch": "unet", "classes": ["a"], "size": 32}
    )
    _one_line_refusal(lambda: load_segmenter(bomb, "cpu"))
    save_segmenter(build_segmenter("unet", 1), tmp_path / "a.safetensors", "unet", ["a"], 32)
    meta = json.loads((tmp_path / "a.json").read_text())
    (tmp_path / "a.json").write_text(json.dumps({**meta, "arch": "convscope_evil_builder:build"}))
    assert "unknown architecture" in _one_line_refusal(lambda: load_segmenter(tmp_path / "a.json", "cpu"))


# ------------------------------------------------------------------------- images
def png_claiming(width: int, height: int) -> bytes:
    """A 70-byte PNG whose header claims width x height (8-bit RGB) with almost no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def zeros_png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((height, width), np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_image_headers_are_checked_before_decoding(tmp_path, monkeypatch):
    (tmp_path / "claims.png").write_bytes(png_claiming(100_000, 100_000))  # 10^10 pixels
    (tmp_path / "thin.png").write_bytes(zeros_png(40_000, 1))
    (tmp_path / "bomb.png").write_bytes(zeros_png(3000, 3000))  # 9 M pixels in a few kB
    assert (tmp_path / "bomb.png").stat().st_size < 20_000
    for name in ("claims.png", "thin.png"):
        with pytest.raises(ImageTooLarge):
            load_image(tmp_path / name)
    monkeypatch.setenv("CONVSCOPE_MAX_PIXELS", "1000000")
    with pytest.raises(ImageTooLarge, match="3000x3000 = 9,000,000 pixels; the limit is 1,000,000"):
        load_image(tmp_path / "bomb.png")
    monkeypatch.setenv("CONVSCOPE_MAX_PIXELS", "10000000")
    assert load_image(tmp_path / "bomb.png", 64).shape == (1, 3, 64, 64)  # reduced cheaply, then resized
    monkeypatch.setenv("CONVSCOPE_MAX_PIXELS", "lots")
    with pytest.raises(ConvscopeError, match="CONVSCOPE_MAX_PIXELS"):
        load_image(tmp_path / "bomb.png")


def test_cli_refuses_an_image_bomb_with_one_line(tmp_path):
    (tmp_path / "claims.png").write_bytes(png_claiming(100_000, 100_000))
    result = CliRunner().invoke(cli_app, ["predict", str(tmp_path / "claims.png"), "--device", "cpu"])
    assert isinstance(result.exception, ImageTooLarge) and "\n" not in str(result.exception)


def test_large_pictures_are_reduced_before_the_exact_resize(tmp_path):
    """The box pre-reduction changes a big photo's 224 px version by little (< 2/255 mean)."""
    photo = load_image("sample:astronaut", None)  # 512 x 512
    big = torch.nn.functional.interpolate(photo, size=1344, mode="nearest")  # 6 x 224: box-reduced by 3 first
    buffer = io.BytesIO()
    Image.fromarray((big[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)).save(buffer, format="PNG")
    path = tmp_path / "big.png"
    path.write_bytes(buffer.getvalue())
    fast = resize(read_image_file(path, (224, 224))[None], 224)
    exact = resize(read_image_file(path)[None], 224)
    assert (fast - exact).abs().mean() < 2 / 255


# ------------------------------------------------------------------------- web app
@pytest.fixture(scope="module")
def web(model):
    app = create_app({"efficientnet_lite0": model}, max_upload_bytes=4 * 2**20, max_pixels=40_000_000)
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        yield client


def _upload(client, data: bytes, **headers):
    return client.post("/api/images", files={"file": ("x.png", data, "image/png")}, headers=headers)


def test_app_image_bombs_are_413_and_big_pictures_are_shrunk(web):
    response = _upload(web, png_claiming(100_000, 100_000))
    assert response.status_code == 413 and "pixels" in response.json()["detail"]
    response = _upload(web, zeros_png(40_000, 1))
    assert response.status_code == 413 and "elongated" in response.json()["detail"]
    response = _upload(web, zeros_png(6300, 6300))  # 39.7 M pixels in 38 kB: under the limit, decoded off the loop
    assert response.status_code == 201 and (response.json()["width"], response.json()["height"]) == (6300, 6300)
    assert web.app.state.images._images.get(response.json()["id"]).shape == (1024, 1024, 3)


def test_app_answers_only_its_host_names(web):
    assert web.get("/api/health").status_code == 200
    assert web.get("/api/health", headers={"host": "localhost:8000"}).status_code == 200
    rebound = web.get("/api/health", headers={"host": "attacker.example:8000"})
    assert rebound.status_code == 400 and "Host" in rebound.json()["detail"]


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "http://attacker.example"},
        {"origin": "null"},
        {"referer": "http://attacker.example/page"},
        {"origin": "http://127.0.0.1:9999"},
    ],
)
def test_cross_origin_state_changes_are_403(web, headers):
    assert _upload(web, zeros_png(8, 8), **headers).status_code == 403
    response = web.post("/api/predict", json={"image": "sample:chelsea"}, headers=headers)
    assert response.status_code == 403 and "cross-origin" in response.json()["detail"]
    assert web.delete("/api/jobs/0", headers=headers).status_code == 403


def test_same_origin_and_scripts_pass(web):
    assert _upload(web, zeros_png(8, 8), origin="http://127.0.0.1:8000").status_code == 201
    assert _upload(web, zeros_png(8, 8), referer="http://127.0.0.1:8000/").status_code == 201
    assert _upload(web, zeros_png(8, 8)).status_code == 201  # curl: no Origin, no Referer


def test_uploads_over_a_mebibyte_never_touch_disk(web, monkeypatch):
    import tempfile

    import starlette.formparsers

    def no_disk(*args, **kwargs):
        raise AssertionError("an upload was spooled to a temporary file")

    for module in (tempfile, starlette.formparsers):
        for name in ("SpooledTemporaryFile", "TemporaryFile", "NamedTemporaryFile"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, no_disk)
    noise = np.random.default_rng(0).integers(0, 256, (800, 800, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="PNG")
    assert buffer.tell() > 1.5 * 2**20
    response = _upload(web, buffer.getvalue())
    assert response.status_code == 201 and response.json()["bytes"] == buffer.tell()


def test_self_describing_checkpoint_cannot_name_a_builder(tmp_path, evil_builder):
    import json

    from safetensors.torch import save_file

    path = tmp_path / "net.safetensors"
    meta = {"format": "convscope-checkpoint/1", "weights": path.name, "arch": evil_builder}
    save_file({"weight": torch.zeros(1)}, str(path), metadata={"convscope": json.dumps(meta)})
    assert "--trust" in _one_line_refusal(lambda: load_model(str(path)))
    assert "convscope_evil_builder" not in sys.modules


def test_max_pixels_option_of_the_cli_and_of_serve(tmp_path, monkeypatch, capsys):
    """``convscope --max-pixels N`` sets the limit of every decode path (as CONVSCOPE_MAX_PIXELS
    does); ``serve --max-pixels`` sets the app's; 0 is a usage error."""
    import convscope.server
    from helpers import run_cli

    monkeypatch.setenv("CONVSCOPE_MAX_PIXELS", "40000000")  # restored after the test (the option sets it)
    photo = tmp_path / "wide.png"
    photo.write_bytes(zeros_png(1200, 1000))
    code, _, err = run_cli(monkeypatch, capsys, "--max-pixels", "1000000", "predict", str(photo), "-k", "1")
    assert code == 2 and "1,200,000 pixels; the limit is 1,000,000" in err and len(err.strip().splitlines()) == 1
    code, out, _ = run_cli(monkeypatch, capsys, "--max-pixels", "2000000", "predict", str(photo), "-k", "1")
    assert code == 0 and out.strip()
    code, _, err = run_cli(monkeypatch, capsys, "--max-pixels", "0", "predict", str(photo))
    assert code == 2 and "--max-pixels" in err and "Traceback" not in err
    seen = {}

    def record(models, **options):  # stands in for the app: records its limits, starts no server
        seen.update(options)
        raise ConvscopeError("recorded")

    monkeypatch.setattr(convscope.server, "create_app", record)
    assert run_cli(monkeypatch, capsys, "serve", "--max-pixels", "123456")[0] == 2 and seen["max_pixels"] == 123456
    assert run_cli(monkeypatch, capsys, "--max-pixels", "654321", "serve")[0] == 2 and seen["max_pixels"] == 654321
    code, _, err = run_cli(monkeypatch, capsys, "serve", "--max-pixels", "0")
    assert code == 2 and "--max-pixels" in err
