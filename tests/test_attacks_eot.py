"""Expectation over Transformation: the transform distribution, BPDA through JPEG, and survival on unseen draws."""

import torch
import torch.nn.functional as F

from convscope.attacks import attack
from convscope.attacks.eot import PhysicalTransform, transform_success


def test_transform_is_identity_when_switched_off_and_reproducible():
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    off = PhysicalTransform(
        rotation=0, scale=(1, 1), translate=0, brightness=0, contrast=(1, 1), blur=(0, 0), noise=0, jpeg=None
    )
    torch.testing.assert_close(off(x), x, atol=1e-5, rtol=0)
    first = PhysicalTransform(generator=torch.Generator().manual_seed(1))(x)
    second = PhysicalTransform(generator=torch.Generator().manual_seed(1))(x)
    assert torch.equal(first, second) and first.min() >= 0 and first.max() <= 1
    assert (first - x).abs().mean() > 0.01  # it does change the image


def test_jpeg_is_applied_forward_and_passed_straight_through_backward():
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    jpeg_only = PhysicalTransform(
        rotation=0, scale=(1, 1), translate=0, brightness=0, contrast=(1, 1), blur=(0, 0), noise=0, jpeg=(10, 10)
    )
    out = jpeg_only(x)
    assert (out - x).abs().mean() > 0.02  # quality 10 destroys random noise
    (grad,) = torch.autograd.grad((out * 3).sum(), x)
    torch.testing.assert_close(grad, torch.full_like(x, 3.0), atol=1e-4, rtol=0)


def test_eot_survives_unseen_transforms_where_pgd_does_not(model, chelsea):
    x = F.interpolate(chelsea, size=128, mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
    common = dict(eps=16 / 255, target="zebra", steps=12, seed=0)
    robust = attack(model, x, method="eot", samples=4, **common)
    plain = attack(model, x, method="pgd", alpha=2 / 255, random_start=False, **common)
    assert robust.success.all() and plain.success.all() and (robust.linf <= 16 / 255 + 1e-6).all()
    unseen = dict(trials=12, target=robust.target)
    held = transform_success(model, robust.x_adv, robust.labels, generator=torch.Generator().manual_seed(99), **unseen)
    fragile = transform_success(model, plain.x_adv, plain.labels, generator=torch.Generator().manual_seed(99), **unseen)
    # held over seeds 0-4 x threads 1/2/4: 0.75-1.0 (9-12 of 12 unseen draws; seed 0: 0.75 at every
    # thread count), fragile 0 in all 15: the EOT example survives most draws, PGD's none
    assert held.item() >= 0.5 and held.item() > fragile.item() + 0.4
