"""R+FGSM (Tramèr et al. 2018): equals torchattacks' RFGSM (one step, alpha = eps/2) with the same
random draw; stays in the eps-ball; the random step alone is not the attack."""

import pytest
import torch
import torch.nn.functional as F

from convscope.attacks import attack
from convscope.attacks.rfgsm import rfgsm
from convscope.errors import ConvscopeError

torchattacks = pytest.importorskip("torchattacks")


@pytest.fixture(scope="module")
def x(small_batch):
    return F.interpolate(small_batch, size=64, mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


def test_rfgsm_equals_torchattacks_with_the_same_draw(model, x):
    labels = model(x).argmax(dim=1)
    eps = 8 / 255
    torch.manual_seed(7)  # torchattacks draws from the global generator: the same stream as a fresh one seeded 7
    theirs = torchattacks.RFGSM(model, eps=eps, alpha=eps / 2, steps=1)(x, labels)
    ours = rfgsm(model, x, labels, eps, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)
    assert (ours - x).abs().max() <= eps + 1e-6


def test_rfgsm_through_the_registry(model, x):
    result = attack(model, x, method="rfgsm", eps=4 / 255, seed=0)
    assert (result.linf <= 4 / 255 + 1e-6).all() and result.eps == 4 / 255
    again = attack(model, x, method="rfgsm", eps=4 / 255, seed=0)
    assert torch.equal(again.x_adv, result.x_adv)
    # the gradient step matters: the random corner alone (alpha = eps/2, no FGSM step) keeps more confidence
    noise_only = (x + 2 / 255 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0)).sign()).clamp(0, 1)
    with torch.no_grad():
        kept = model(noise_only).softmax(-1).gather(1, result.labels[:, None]).squeeze(1)
        after = model(result.x_adv).softmax(-1).gather(1, result.labels[:, None]).squeeze(1)
    assert (after < kept).all()
    with pytest.raises(ConvscopeError, match=r"alpha must be in \[0, eps\)"):
        attack(model, x, method="rfgsm", eps=4 / 255, alpha=4 / 255)
