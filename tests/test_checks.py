"""Input checks: wrong shapes, dtypes, ranges and NaNs give one clear error."""

import pytest
import torch

from convscope import ConvscopeError
from convscope.predictions import predict


@pytest.mark.parametrize(
    "x, message",
    [
        (torch.rand(3, 32, 32), "add a batch dimension"),
        (torch.randint(0, 255, (1, 3, 32, 32), dtype=torch.uint8), "float tensor"),
        (torch.rand(1, 1, 32, 32), "3 channels"),
        (torch.full((1, 3, 32, 32), float("nan")), "NaN"),
        (torch.rand(1, 3, 32, 32) * 255, r"\[0, 1\]"),
        ([[0.5]], "torch.Tensor"),
    ],
)
def test_bad_tensors(model, x, message):
    with pytest.raises(ConvscopeError, match=message):
        predict(model, x)
