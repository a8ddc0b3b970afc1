"""The one target contract."""

import pytest
import torch

from convscope import ConvscopeError
from convscope.models import imagenet_labels
from convscope.targets import class_index, resolve_target, target_score

LOGITS = torch.arange(2 * 1000, dtype=torch.float32).view(2, 1000) % 997


@pytest.mark.parametrize(
    "target, expected",
    [
        (None, [996, 993]),
        (285, [285, 285]),
        ("espresso", [967, 967]),
        ("Egyptian Cat", [285, 285]),
        ([1, 2], [1, 2]),
        (torch.tensor([3, 4]), [3, 4]),
        (["tabby", 7], [281, 7]),
        ("12", [12, 12]),
    ],
)
def test_accepted_forms(target, expected):
    assert resolve_target(target, LOGITS, imagenet_labels()).tolist() == expected


def test_callable_target_scores():
    assert torch.equal(target_score(lambda z: z[:, 5] - z[:, 6], LOGITS), LOGITS[:, 5] - LOGITS[:, 6])
    assert torch.equal(target_score(285, LOGITS, imagenet_labels()), LOGITS[:, 285])


@pytest.mark.parametrize(
    "target, message",
    [
        (1000, "out of range"),
        (-1, "out of range"),
        ("espreso", "did you mean 'espresso'"),
        ([1, 2, 3], "3 targets for 2 images"),
        (torch.tensor([0.5, 1.0]), "integer class ids"),
        (2.5, "target must be"),
    ],
)
def test_bad_targets(target, message):
    with pytest.raises(ConvscopeError, match=message):
        resolve_target(target, LOGITS, imagenet_labels())


def test_bad_callable_and_nameless_models():
    with pytest.raises(ConvscopeError, match="shape"):
        target_score(lambda z: z.sum(), LOGITS)
    with pytest.raises(ConvscopeError, match="no class names"):
        class_index("cat", None)
