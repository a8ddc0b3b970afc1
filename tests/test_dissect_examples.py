"""Top-k dataset examples (Zeiler & Fergus 2014): exact against brute force, resumable, batch-independent."""

import pytest
import torch
from torch import nn

import convscope
from convscope.dissect import top_k_examples, top_units
from convscope.dissect.examples import ImageSource, example_strip, load_examples
from convscope.dissect.projection import project_units
from convscope.errors import ConvscopeError
from convscope.hooks import capture
from convscope.testing import assert_untouched, model_state


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return convscope.sample_folder(tmp_path_factory.mktemp("photos"), n=10)


def _colour_net():
    """1x1 conv: channel 0 = red, channel 1 = -green (hand-computable maxima)."""
    net = nn.Sequential(nn.Conv2d(3, 2, 1, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0, 0], [0, -1.0, 0]])[..., None, None])
    return net


def _brute_force(acts: torch.Tensor, k: int):
    """Expected lists from all activations at once: (values, indices, positions) per channel."""
    flat = acts.flatten(2)
    strongest, where = flat.max(-1)  # (N, C)
    expected = []
    for c in range(acts.shape[1]):
        order = sorted(range(acts.shape[0]), key=lambda i: (-float(strongest[i, c]), i))[:k]
        expected.append((strongest[order, c], order, [divmod(int(where[i, c]), acts.shape[-1]) for i in order]))
    return expected


def test_hand_built_net_exact_with_ties_and_batching():
    images = torch.rand(7, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.5
    images[2, 0, 5, 6] = 1.0  # reddest pixel of all at (5, 6)
    images[4] = images[2]  # a tie: the lower index (2) must come first
    images[3, 1] = 0.0  # greenless: channel 1 (-green) peaks at 0
    net = _colour_net()
    for batch_size in (1, 3, 7):
        found = top_k_examples(net, images, "0", k=3, size=8, batch_size=batch_size, progress=False)
        record = found["0"]
        assert record.indices[0].tolist()[:2] == [2, 4]
        assert record.positions[0, 0].tolist() == [5, 6] and record.values[0, 0] == 1.0
        assert record.indices[1, 0] == 3 and record.values[1, 0] == 0.0
        for c, (values, order, positions) in enumerate(_brute_force(net(images).detach(), 3)):
            assert record.indices[c].tolist() == order
            torch.testing.assert_close(record.values[c], values)
            assert [tuple(p) for p in record.positions[c].tolist()] == positions
        assert record.values.shape == (2, 3)  # O(k x channels), whatever the data size


def test_fewer_images_than_k_leaves_empty_slots():
    found = top_k_examples(_colour_net(), torch.rand(2, 3, 4, 4), "0", k=4, size=4, progress=False)
    assert found["0"].indices[:, 2:].eq(-1).all() and torch.isinf(found["0"].values[:, 2:]).all()
    assert len(found.patches("0", 0)) == 2


def test_real_model_matches_brute_force_and_patches(model, folder):
    before = model_state(model)
    found = top_k_examples(model, folder, ["bn1", "blocks.3"], k=3, size=96, batch_size=4, progress=False)
    assert_untouched(model, before)
    assert found.complete and found.seen == 10 and len(found.sources) == 10
    images = torch.stack([ImageSource(folder, 96)(i) for i in range(10)])
    with torch.no_grad(), capture(model, ["bn1", "blocks.3"], detach=True) as seen:
        model(images)
    for layer in ("bn1", "blocks.3"):
        for c, (values, order, _positions) in enumerate(_brute_force(seen[layer], 3)):
            assert found[layer].indices[c].tolist() == order
            torch.testing.assert_close(found[layer].values[c], values, rtol=1e-4, atol=1e-5)
    stats = found.statistics("blocks.3")
    torch.testing.assert_close(stats["mean_max"], seen["blocks.3"].flatten(2).amax(-1).mean(0), rtol=1e-4, atol=1e-5)
    patch, image, (top, left, bottom, right) = found.patches("bn1", 5)[0]
    assert image.shape == (3, 96, 96) and patch.shape[-2:] == (bottom - top, right - left)
    assert patch.shape[-1] <= 3  # bn1's receptive field is 3 px
    torch.testing.assert_close(patch, image[:, top:bottom, left:right])
    strip = example_strip(found.patches("blocks.3", 0), side=32)
    assert strip.size == (70, 3 * 36)


class _Interrupting(torch.utils.data.Dataset):
    """Images from a tensor; raises KeyboardInterrupt once when ``stop_at`` is read (a Ctrl-C)."""

    def __init__(self, images, stop_at):
        self.images, self.stop_at = images, stop_at

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        if index == self.stop_at:
            self.stop_at = None
            raise KeyboardInterrupt
        return self.images[index]


def test_interrupt_saves_partial_results_and_resumes(tmp_path):
    images = torch.rand(9, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    net, checkpoint = _colour_net(), tmp_path / "partial.pt"
    data = _Interrupting(images, stop_at=5)
    with pytest.warns(UserWarning, match="interrupted after 4 of 9"):
        partial = top_k_examples(net, data, "0", k=2, size=8, batch_size=2, checkpoint=checkpoint, progress=False)
    assert not partial.complete and partial.seen == 4 and checkpoint.is_file()
    assert load_examples(checkpoint, images).seen == 4
    resumed = top_k_examples(net, data, "0", k=2, size=8, batch_size=2, checkpoint=checkpoint, progress=False)
    whole = top_k_examples(net, images, "0", k=2, size=8, batch_size=9, progress=False)
    assert resumed.complete and resumed.seen == 9
    assert torch.equal(resumed["0"].indices, whole["0"].indices)
    assert torch.equal(resumed["0"].positions, whole["0"].positions)


def test_top_units_reverse_view(model, small_batch):
    image = small_batch[:1]
    units = top_units(model, image, "blocks.3", k=5)
    with torch.no_grad(), capture(model, "blocks.3", detach=True) as seen:
        model(image)
    maxima = seen["blocks.3"][0].flatten(1).amax(1)
    assert [u.channel for u in units] == maxima.topk(5).indices.tolist()
    for unit in units:
        y, x = unit.position
        assert seen["blocks.3"][0, unit.channel, y, x] == pytest.approx(unit.value)
        top, left, bottom, right = unit.box
        assert 0 <= top < bottom <= 128 and 0 <= left < right <= 128


def test_projection_stays_inside_the_receptive_field(model, small_batch):
    before = model_state(model)
    images = torch.nn.functional.interpolate(small_batch, size=64, mode="bilinear", antialias=True).clamp(0, 1)
    field = convscope.receptive_field(model, "blocks.1", 64)
    positions = [(4, 5), (10, 3)]
    projected = project_units(model, images, "blocks.1", [3, 7], positions, rule="deconvnet")
    assert_untouched(model, before)
    for i, (y, x) in enumerate(positions):
        top, left, bottom, right = field.box(y, x, (64, 64))
        inside = projected[i, :, top:bottom, left:right]
        assert inside.abs().sum() > 0
        assert projected[i].abs().sum() == pytest.approx(float(inside.abs().sum()))
    single = project_units(model, images[1:], "blocks.1", [7], positions[1:])
    torch.testing.assert_close(single[0], projected[1], rtol=1e-4, atol=1e-7)


def test_bad_input_is_a_clear_error(model):
    with pytest.raises(ConvscopeError, match="unknown layer"):
        top_k_examples(model, torch.rand(2, 3, 32, 32), "blocks.99", progress=False)
    with pytest.raises(ConvscopeError, match="cannot mine"):
        top_k_examples(model, 42, "bn1", progress=False)
    with pytest.raises(ConvscopeError, match="one image"):
        top_units(model, torch.rand(2, 3, 32, 32), "bn1")
