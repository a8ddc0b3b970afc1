"""Adversarial training as the papers set it up: CIFAR-style ResNets, SGD + schedules, resume, the final evaluation."""

import json
import math
import warnings

import pytest
import torch
from torch.utils.data import Dataset, Subset

from convscope.errors import ConvscopeError
from convscope.models import load_model, save_checkpoint
from convscope.robustness.architectures import parse_options, training_classifier
from convscope.robustness.evaluation import evaluate_robustness
from convscope.robustness.recipe import Recipe
from convscope.robustness.resnets import resnet_cifar, wide_resnet_cifar
from convscope.robustness.train_state import read_training_state
from convscope.robustness.training import digits_dataset, train
from convscope.testing import assert_untouched, model_state


def test_resnets_have_the_published_sizes_and_take_any_input_size():
    def parameters(network):
        return sum(p.numel() for p in network.parameters())

    # PreActResNet-18 (Rice 2020, Wong 2020): 11.17 M parameters; WRN-34-10 (Madry 2018): 46.16 M
    with torch.device("meta"):  # counted without allocating or initialising them
        assert round(parameters(resnet_cifar(10)) / 1e6, 2) == 11.17
        assert round(parameters(wide_resnet_cifar(10, depth=34, widen=10)) / 1e6, 2) == 46.16
    tiny = resnet_cifar(7, depth=10, width=4).eval()
    for size in (8, 16, 32, 45):
        assert tiny(torch.rand(2, 3, size, size)).shape == (2, 7)
    with pytest.raises(ConvscopeError, match="depth = 2"):
        resnet_cifar(10, depth=12)
    with pytest.raises(ConvscopeError, match="depth = 4"):
        wide_resnet_cifar(10, depth=30)


def test_schedules_follow_the_papers():
    piecewise = Recipe()  # SGD 0.1, momentum 0.9, weight decay 5e-4, x0.1 at 50 % and 75 % (Madry/Rice)
    rates = [piecewise.lr_at(step, 10, 200) for step in (0, 999, 1000, 1499, 1500, 1999)]
    assert rates == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    optimizer = piecewise.build(torch.nn.Linear(2, 2).parameters())
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["weight_decay"] == 5e-4
    assert optimizer.defaults["momentum"] == 0.9
    cosine = Recipe(schedule="cosine", warmup_epochs=1)
    assert cosine.lr_at(0, 10, 5) == pytest.approx(0.01) and cosine.lr_at(9, 10, 5) == pytest.approx(0.1)
    assert cosine.lr_at(30, 10, 5) == pytest.approx(0.05)  # half-way through the annealing: lr/2
    adam = Recipe("adam", schedule="constant")
    assert (
        adam.lr == 1e-3
        and adam.weight_decay == 0
        and isinstance(adam.build([torch.zeros(1, requires_grad=True)]), torch.optim.Adam)
    )
    assert "piecewise (×0.1 at 50%, 75%)" in piecewise.describe()
    with pytest.raises(ConvscopeError, match="unknown schedule"):
        Recipe(schedule="step")


def test_architectures_by_name_get_the_data_s_classes_and_round_trip_through_a_checkpoint(tmp_path):
    assert parse_options("depth=10, width=4,norm=true,name=x") == {"depth": 10, "width": 4, "norm": True, "name": "x"}
    with pytest.raises(ConvscopeError, match="name=value"):
        parse_options("depth")
    for arch in ("torchvision:resnet18", "timm:resnet10t", "small_cnn"):
        model = training_classifier(arch, 7, 32).eval()
        assert model(torch.rand(1, 3, 32, 32)).shape == (1, 7)
    model = training_classifier("resnet_cifar", 3, 16, options={"depth": 10, "width": 4}, labels=["a", "b", "c"])
    path = save_checkpoint(model, tmp_path / "m.safetensors")
    loaded = load_model(str(path))
    x = torch.rand(2, 3, 16, 16)
    model.eval()
    torch.testing.assert_close(loaded(x), model(x))
    assert loaded.labels == ["a", "b", "c"] and json.loads((tmp_path / "m.json").read_text())["arch"] == "resnet_cifar"
    with pytest.raises(ConvscopeError, match="never downloads"):
        training_classifier("torchvision:resnet18", 7, 32, pretrained=True)
    pretrained = training_classifier("efficientnet_lite0", 5, 32, pretrained=True)  # the embedded weights
    assert pretrained.head_spec["out_features"] == 5 and pretrained.mean == (0.5, 0.5, 0.5)


class CtrlC(Dataset):
    """``data``, with a KeyboardInterrupt (Ctrl-C) at the ``after``-th item read."""

    def __init__(self, data, after):
        self.data, self.after, self.reads = data, after, 0

    def __len__(self):
        return len(self.data)

    def __getitem__(self, index):
        self.reads += 1
        if self.reads > self.after:
            raise KeyboardInterrupt
        return self.data[index]


@pytest.mark.parametrize("recipe", [Recipe(warmup_epochs=0.5), Recipe("adam", schedule="cosine")], ids=["sgd", "adam"])
def test_an_interrupted_run_resumed_ends_with_the_weights_of_an_uninterrupted_one(tmp_path, recipe):
    train_data = Subset(digits_dataset(8), range(48))
    test_data = Subset(digits_dataset(8, "test"), range(16))

    def run(data, name, resume=False):
        torch.manual_seed(0)
        network = resnet_cifar(10, depth=10, width=4)
        history = train(
            network,
            data,
            test_data,
            epochs=2,
            adversarial="pgd",
            eps=0.1,
            steps=1,
            batch_size=16,
            recipe=recipe,
            eval_steps=1,
            checkpoint=tmp_path / name,
            resume=resume,
            progress=False,
        )
        return network, history

    straight, straight_history = run(train_data, "straight.safetensors")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, cut = run(CtrlC(train_data, 48 + 20), "cut.safetensors")  # Ctrl-C in the middle of epoch 2
    assert len(cut.epochs) == 1 and any("resume" in str(w.message) for w in caught)
    state = read_training_state(tmp_path / "cut.safetensors")
    assert state.epoch == 1 and state.meta["step"] == 3 and any(k.startswith("optimizer.") for k in state.tensors)
    assert {"rng.0.torch", "rng.0.loader", "rng.0.attack"} <= set(state.tensors)
    resumed, resumed_history = run(train_data, "cut.safetensors", resume=True)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    assert [e.clean_accuracy for e in resumed_history.epochs] == [e.clean_accuracy for e in straight_history.epochs]
    assert [e.lr for e in resumed_history.epochs] == [e.lr for e in straight_history.epochs]
    with pytest.raises(ConvscopeError, match="other settings.*batch_size"):
        train(
            resnet_cifar(10, depth=10, width=4),
            train_data,
            test_data,
            epochs=2,
            batch_size=8,
            recipe=recipe,
            checkpoint=tmp_path / "cut.safetensors",
            resume=True,
            progress=False,
        )


def test_the_final_evaluation_names_its_attack_and_subset_and_leaves_the_model_alone():
    torch.manual_seed(0)
    network = resnet_cifar(10, depth=10, width=4)
    network.train()
    before = model_state(network)
    test_data = digits_dataset(8, "test")
    auto = evaluate_robustness(network, test_data, 0.1, "autoattack", steps=3, queries=20, limit=6, batch_size=4)
    assert auto.images == 6 and auto.total == 360 and auto.subset == "the first 6 of 360 test images"
    assert (
        auto.protocol
        == "AutoAttack standard (apgd-ce, apgd-t, fab-t, square, 3 steps, 20 queries: not the protocol's budget)"
    )
    assert sum(auto.broken_by.values()) + auto.robust == 6 and auto.robust <= auto.clean
    record = auto.as_dict()
    low, high = record["robust_interval"]
    assert low - 1e-12 <= record["robust_accuracy"] <= high
    assert "under AutoAttack standard" in auto.summary() and "95 % Wilson" in auto.summary()
    pgd = evaluate_robustness(network, test_data, 0.1, "pgd", steps=3, limit=6, batch_size=4)
    assert pgd.protocol.startswith("PGD-3") and pgd.clean == auto.clean and pgd.robust >= auto.robust
    clean = evaluate_robustness(network, test_data, 0.1, "none", limit=6)
    assert clean.robust is None and math.isclose(clean.clean_accuracy, auto.clean_accuracy)
    assert_untouched(network, before)
    with pytest.raises(ConvscopeError, match="unknown evaluation attack"):
        evaluate_robustness(network, test_data, 0.1, "fgsm")


def test_the_train_command_trains_a_resnet_resumes_and_writes_a_checkpoint_with_its_evaluation(
    monkeypatch, capsys, tmp_path
):
    from helpers import run_cli

    arguments = ["train", "samples:cifar10", "--arch", "resnet_cifar", "--arch-options", "depth=10,width=4"]
    arguments += ["--size", "16", "--epochs", "1", "--batch-size", "8", "--adversarial", "pgd", "--eps", "8/255"]
    arguments += ["--steps", "1", "--augment", "--eval", "pgd", "--eval-size", "4", "--final-eval-size", "3"]
    arguments += ["--out", str(tmp_path)]
    code, text, err = run_cli(monkeypatch, capsys, *arguments)
    assert code == 0, err
    described = json.loads((tmp_path / "pgd.json").read_text())
    evaluation = described["evaluation"]
    # the final evaluation's own subset (--final-eval-size), not the per-epoch one (--eval-size)
    assert evaluation["protocol"].startswith("PGD-20") and evaluation["subset"] == "the first 3 of 4 test images"
    assert len(evaluation["clean_interval"]) == 2 and described["training"]["recipe"].startswith("SGD lr 0.1")
    assert "under PGD-20" in " ".join(text.split()) and "95 % Wilson" in text
    from helpers import png_dpi, png_title

    last = described["training"]["history"][-1]  # the curves name the model and the data, and say the numbers
    assert png_title(tmp_path / "pgd.png") == (
        "resnet_cifar on samples:cifar10: pgd adversarial training, test accuracy per epoch last epoch: "
        f"clean {last['clean_accuracy']:.3f}, PGD-20 {last['robust_accuracy']:.3f}"
    ) and png_dpi(tmp_path / "pgd.png") == (300, 300)
    from safetensors.torch import load_file

    first = load_file(tmp_path / "pgd.safetensors")
    code, text, err = run_cli(monkeypatch, capsys, *arguments, "--resume")  # finished: nothing left to train
    assert code == 0, err
    again = load_file(tmp_path / "pgd.safetensors")
    assert all(torch.equal(again[k], v) for k, v in first.items())
    resumed = json.loads((tmp_path / "pgd.json").read_text())["evaluation"]
    assert (resumed["clean"], resumed["robust"]) == (evaluation["clean"], evaluation["robust"])
    model = load_model(str(tmp_path / "pgd.safetensors"))
    assert model.arch == "resnet_cifar" and model(torch.rand(1, 3, 16, 16)).shape == (1, 10)
    code, _, err = run_cli(monkeypatch, capsys, *arguments[:-2], "--out", str(tmp_path), "--resume", "--epochs", "2")
    assert code == 2 and "other settings (epochs" in err
    code, _, err = run_cli(monkeypatch, capsys, "train", "digits", "--schedule", "step")
    assert code == 2 and "unknown schedule 'step'" in err
    code, _, err = run_cli(monkeypatch, capsys, "train", "digits", "--final-eval-size", "-1")
    assert code == 2 and "'--final-eval-size': must be >= 0, got -1" in err
