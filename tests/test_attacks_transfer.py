"""Transfer attacks (MI/DI/TI-FGSM) and the transfer matrix."""

import torch
from torch import nn

from convscope.attacks.gradient import pgd
from convscope.attacks.transferable import gaussian_kernel, transfer_fgsm, transfer_matrix


def nets():
    torch.manual_seed(0)
    a = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 10)
    )
    b = nn.Sequential(
        nn.Conv2d(3, 4, 5, padding=2), nn.Tanh(), nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(64, 10)
    )
    return a.eval(), b.eval()


def test_without_momentum_diversity_or_smoothing_it_is_bim():
    a, _ = nets()
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 3])
    plain = transfer_fgsm(a, x, y, 8 / 255, steps=4, momentum=0.0)
    torch.testing.assert_close(plain, pgd(a, x, y, 8 / 255, 2 / 255, 4, random_start=False))
    kernel = gaussian_kernel(7)
    assert abs(float(kernel.sum()) - 1) < 1e-6 and kernel[3, 3] == kernel.max()
    for options in (
        dict(momentum=1.0),
        dict(diversity=1.0),
        dict(kernel=5),
        dict(momentum=1.0, diversity=0.5, kernel=5),
    ):
        adv = transfer_fgsm(a, x, y, 8 / 255, steps=3, generator=torch.Generator().manual_seed(0), **options)
        assert (adv - x).abs().amax() <= 8 / 255 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
        assert not torch.equal(adv, x)


def test_transfer_matrix_scores_every_target_on_every_source(tmp_path):
    a, b = nets()
    x = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        y = a(x).argmax(-1)
    matrix = transfer_matrix({"a": a, "b": b}, x, y, "mi_fgsm", 32 / 255, steps=5)
    assert matrix.names == ["a", "b"] and matrix.counted[0] == 8
    assert all(0 <= v <= 1 for row in matrix.rate for v in row if v == v)
    assert matrix.rate[0][0] == 1.0  # white-box MI-FGSM at 32/255 fools the random net
    matrix.write_csv(tmp_path / "m.csv")
    matrix.plot(tmp_path / "m.png")
    assert (tmp_path / "m.csv").read_text().splitlines()[0] == "source,a,b"
    from helpers import png_dpi, png_title, svg_text

    assert png_title(tmp_path / "m.png") == "mi_fgsm, ε = 32/255: transfer success rate" and png_dpi(
        tmp_path / "m.png"
    ) == (300, 300)
    matrix.rate[1][1], matrix.counted[1] = float("nan"), 0  # a target that got no image right: said, not blank
    matrix.plot(tmp_path / "m.svg")
    text = svg_text(tmp_path / "m.svg")
    assert "a (8 correct)" in text and "b (0 correct)" in text and "n/a" in text
