"""``convscope tour`` on a user's model: each step that cannot apply says so in one line, the rest run.

The embedded model's tour is what ``make demo`` runs (and each step has its own test next to its
command); here the model is a user's 32x32 CIFAR-style builder with random weights and no class
names: the ImageNet classes and EfficientNet layers some steps ask for do not exist in it.
"""

import sys
import textwrap

import pytest

from helpers import run_cli

NET = '''
from torch import nn


def cifar_net(num_classes: int = 10):
    """Flatten + linear on the 8x8 map: only takes 32x32."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(16 * 8 * 8, num_classes))
'''


@pytest.fixture
def user_net(tmp_path):
    (tmp_path / "tour_usernet.py").write_text(textwrap.dedent(NET))
    sys.path.insert(0, str(tmp_path))
    yield "tour_usernet:cifar_net"
    sys.path.remove(str(tmp_path))
    sys.modules.pop("tour_usernet", None)


def test_tour_on_a_fixed_size_user_model(monkeypatch, capsys, tmp_path, user_net):
    from convscope.registry import import_submodules
    from convscope.tour import steps

    import_submodules("convscope.commands")
    out = tmp_path / "tour"
    code, text, err = run_cli(
        monkeypatch, capsys, "tour", "-m", user_net, "--input-size", "32", "--device", "cpu", "-o", str(out)
    )
    assert code == 0 and "Traceback" not in err, text[-2000:] + err[-2000:]
    flat = " ".join(text.split())  # rich wraps long lines
    ran, skipped = flat.count("✓ "), flat.count(f"does not apply to {user_net}:")
    assert "✗" not in flat and ran + skipped == len(steps()), flat[-2000:]
    assert ran >= 4 and skipped >= 3  # prediction, layer map, corruptions, report; ImageNet classes and layers skip
    assert "✓ prediction (top-5)" in flat and "class 'zebra': this model has no class names" in flat
    # the layers are chosen from the model's depth, so no step is skipped for a layer name
    assert (
        "✓ first-layer filters" in flat and "✓ feature visualization, DeepDream" in flat and "unknown layer" not in flat
    )
    assert (out / "prediction.png").is_file() and (out / "layers.tsv").is_file()
    assert f"{skipped} steps do not apply to this model" in flat
