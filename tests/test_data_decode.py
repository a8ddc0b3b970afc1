"""The loader's hot path: torchvision.io decodes 8-bit PNG/JPEG to the same pixels as Pillow,
damaged files stay one-line errors, the pinned-memory decision, and attack-eval's clean pass
reused by the attack (one forward fewer per batch)."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from convscope.attacks import attack
from convscope.attacks.evaluate import AttackReduction
from convscope.data import Batch, default_workers, loader_options, open_dataset, pins_memory, samples_folder, stream
from convscope.errors import ConvscopeError
from convscope.images import array_to_tensor, pil_to_tensor, read_image_file, sample_array


def pillow(path) -> torch.Tensor:
    """The Pillow decode the layer used before (and still uses for other formats and modes)."""
    with Image.open(path) as image:
        image.load()
        return pil_to_tensor(image)


def test_native_decode_equals_pillow_bit_for_bit(tmp_path):
    files = []
    try:
        files += sorted(samples_folder().iterdir())  # 100 real JPEGs and PNGs (ImageNet, CIFAR, MNIST, ...)
    except ConvscopeError:
        pass
    for name in ("chelsea", "coffee", "camera"):  # RGB and grey, every chroma subsampling, PNG
        picture = Image.fromarray(sample_array(name))
        for quality, subsampling in ((95, 0), (75, 1), (30, 2)):
            files.append(tmp_path / f"{name}-{quality}.jpg")
            picture.save(files[-1], quality=quality, subsampling=subsampling)
        files.append(tmp_path / f"{name}.png")
        picture.save(files[-1])
    for path in files:
        decoded = read_image_file(path)
        assert decoded.dtype == torch.float32 and decoded.is_contiguous()
        assert torch.equal(decoded, pillow(path)), path.name


def test_other_modes_still_go_through_pillow(tmp_path):
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 128  # half-transparent red over white
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    pixel = read_image_file(tmp_path / "rgba.png")[:, 0, 0]
    assert torch.allclose(pixel, torch.tensor([1.0, 127 / 255, 127 / 255]), atol=1e-6)
    grey16 = Image.fromarray(np.full((8, 8), 65535 // 2, dtype=np.uint16))
    grey16.save(tmp_path / "grey16.png")
    assert torch.allclose(read_image_file(tmp_path / "grey16.png"), torch.full((3, 8, 8), 0.5), atol=1e-4)
    assert torch.equal(array_to_tensor(np.full((2, 2), 255, dtype=np.uint8)), torch.ones(3, 2, 2))


@pytest.mark.parametrize("kind", ["JPEG", "PNG"])
def test_damaged_files_are_one_line_errors(tmp_path, kind):
    buffer = io.BytesIO()
    Image.fromarray(sample_array("chelsea")).save(buffer, kind)
    path = tmp_path / f"cut.{kind.lower()}"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ConvscopeError, match="truncated or corrupt") as error:
        read_image_file(path)
    assert "\n" not in str(error.value) and ".cpp" not in str(error.value)


def test_pinned_memory_only_for_a_cuda_device_that_exists():
    """Untested on a GPU here (no GPU lent): the decision is checked, and CPU runs never pin."""
    assert not pins_memory(None) and not pins_memory("cpu") and not pins_memory(torch.device("cpu"))
    assert pins_memory("cuda") == pins_memory("cuda:0") == torch.cuda.is_available()
    assert loader_options("cpu", 0) == {
        "num_workers": 0,
        "pin_memory": False,
        "prefetch_factor": None,
        "persistent_workers": False,
    }
    assert loader_options("cpu", 2, passes=5)["persistent_workers"]
    assert (
        not loader_options("cpu", 2)["persistent_workers"]
        and not loader_options("cpu", 0, passes=5)["persistent_workers"]
    )


class Counted(torch.nn.Module):
    """The real model, counting its forward passes."""

    def __init__(self, model):
        super().__init__()
        self.model, self.labels, self.name, self.calls = model, model.labels, model.name, 0

    def forward(self, x):
        self.calls += 1
        return self.model(x)


def test_attack_eval_reuses_the_clean_pass(model, small_batch):
    x = torch.nn.functional.interpolate(small_batch, size=32, mode="bilinear", antialias=True).clamp(0, 1)
    with torch.no_grad():
        logits = model(x)
    plain = attack(model, x, method="fgsm", eps=2 / 255)
    reused = attack(model, x, method="fgsm", eps=2 / 255, clean_logits=logits)
    assert torch.equal(plain.x_adv, reused.x_adv) and torch.equal(plain.predicted, reused.predicted)
    assert torch.equal(plain.original_confidence, reused.original_confidence)
    with pytest.raises(ConvscopeError, match="rows"):
        attack(model, x, method="fgsm", eps=2 / 255, clean_logits=logits[:1])
    counted = Counted(model)
    reduction = AttackReduction(counted, "fgsm", 2 / 255)
    state = reduction.start()
    reduction.update(state, Batch(x, torch.full((2,), -1), ["a", "b"], torch.arange(2)), 0)
    assert state["attacked"] == 2 and counted.calls == 3  # clean, FGSM's gradient pass, the re-check


class ThreadsSeen(torch.utils.data.Dataset):
    """The bundled photos through the data layer, noting torch's intra-op thread count at each read."""

    def __init__(self, dataset):
        self.dataset, self.ids, self.seen = dataset, dataset.ids, []

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        self.seen.append(torch.get_num_threads())
        return self.dataset[index]


def test_in_process_loading_reads_at_one_thread_and_gives_the_threads_back():
    """Items read in the main process (no workers) go through torch at one thread (a small op at 2
    threads costs 4-5x its CPU time in pool wake-ups); the caller's count is back for each batch."""
    dataset = ThreadsSeen(open_dataset("photos", 32))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        during = [torch.get_num_threads() for _ in stream(dataset, batch_size=3, workers=0)]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert dataset.seen == [1] * len(dataset) and during == [2] * -(-len(dataset) // 3)


def test_default_workers_leave_a_small_cpu_to_the_model(monkeypatch):
    """On at most 2 cores a CPU model reads in-process (a worker would decode on a core the model
    fills); a GPU run, a bigger machine and CONVSCOPE_DATA_WORKERS keep their workers."""
    monkeypatch.delenv("CONVSCOPE_DATA_WORKERS", raising=False)
    for cpus, cpu_model, gpu_model, unknown in ((2, 0, 1, 1), (1, 0, 0, 0), (8, 4, 4, 4), (3, 2, 2, 2)):
        monkeypatch.setattr("os.cpu_count", lambda cpus=cpus: cpus)
        assert (default_workers("cpu"), default_workers("cuda"), default_workers()) == (cpu_model, gpu_model, unknown)
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    monkeypatch.setenv("CONVSCOPE_DATA_WORKERS", "1")
    assert default_workers("cpu") == 1
