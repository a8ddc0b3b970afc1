"""A plain DataLoader from Python: streamed by every reduction, resumable when its batches replay
(no shuffle: the finished batches are skipped without being read), refused in one line otherwise."""

import pytest
import torch

from convscope.attacks.evaluate import AttackReduction, evaluate_attack
from convscope.data import loader_replay_problem, open_dataset, reduce_dataset, samples_folder
from convscope.errors import ConvscopeError

try:
    samples_folder()
except ConvscopeError:  # the labelled samples are a test dependency (the Makefile installs them)
    pytest.skip("the labelled samples: pip install --no-deps foolbox==3.3.4", allow_module_level=True)


class Counted(torch.utils.data.Dataset):
    """(image, label) pairs of the labelled ImageNet samples; records which items were read."""

    def __init__(self):
        data = open_dataset("samples:imagenet", 32)
        self.items = [data[i][:2] for i in range(14)]
        self.reads: list[int] = []

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        self.reads.append(index)
        return self.items[index]


def test_a_sequential_loader_resumes_by_skipping_finished_batches(model, tmp_path):
    data = Counted()
    loader = torch.utils.data.DataLoader(data, batch_size=4)  # 4 batches: 4, 4, 4, 2
    assert loader_replay_problem(loader) is None
    reduction = lambda: AttackReduction(model, "pgd", 4 / 255, seed=3, steps=2)  # noqa: E731 (random start: seeds per batch)
    whole = reduce_dataset(reduction(), loader, shard_batches=1)
    assert whole.images == 14 and whole.shards == 1 and whole.total == 14
    finished = []

    def crash_after_two(count):
        finished.append(count)
        if len(finished) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        reduce_dataset(reduction(), loader, resume=tmp_path / "run", shard_batches=1, progress=crash_after_two)
    data.reads.clear()
    again = reduce_dataset(reduction(), loader, resume=tmp_path / "run", shard_batches=1)
    assert again.resumed == 2 and again.shards == 4 and sorted(data.reads) == list(range(8, 14))  # 8 never re-read
    for key in ("images", "clean", "top5", "attacked", "success", "robust"):
        assert again.state[key] == whole.state[key], key
    assert again.state["linf"] == pytest.approx(whole.state["linf"])
    # the same through evaluate_attack: ground truth from the loader's labels
    report = evaluate_attack(model, loader, "pgd", 4 / 255, seed=3, steps=2, resume=tmp_path / "run2")
    assert report.images == 14 and report.ground_truth and report.clean_accuracy == whole.state["clean"] / 14


def test_a_shuffling_loader_streams_but_refuses_to_resume_in_one_line(model, tmp_path):
    data = Counted()
    shuffled = torch.utils.data.DataLoader(data, batch_size=5, shuffle=True)
    assert "RandomSampler (shuffle=True)" in loader_replay_problem(shuffled)
    plain = reduce_dataset(AttackReduction(model, "fgsm", 2 / 255), shuffled)
    ordered = reduce_dataset(AttackReduction(model, "fgsm", 2 / 255), torch.utils.data.DataLoader(data, batch_size=5))
    assert plain.images == 14 and plain.state["clean"] == ordered.state["clean"]  # FGSM: no seed, order-free
    with pytest.raises(ConvscopeError, match="cannot resume from a DataLoader .*RandomSampler.*shuffle=False") as error:
        reduce_dataset(AttackReduction(model, "fgsm", 2 / 255), shuffled, resume=tmp_path / "run")
    assert "\n" not in str(error.value) and not (tmp_path / "run").exists()
    with pytest.raises(ConvscopeError, match="ray engine reads a Dataset"):
        reduce_dataset(AttackReduction(model, "fgsm", 2 / 255), shuffled, engine="ray")
