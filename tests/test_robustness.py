"""Robustness: CE/mCE arithmetic, adversarial training (also under torchrun), defenses with BPDA/EOT."""

import json
import textwrap

import pytest
import torch
from torch import nn

from convscope.errors import ConvscopeError
from convscope.robustness.defenses import DEFENSES, DefendedModel, ExpectationOverTransformation, evaluate_defense
from convscope.robustness.defenses import StochasticActivationPruning
from convscope.robustness.imagenet_c import ALEXNET_CLEAN_ERROR, ALEXNET_ERRORS, CorruptionErrors, corruption_errors
from convscope.robustness.evaluation import evaluate_robustness
from convscope.robustness.recipe import Recipe
from convscope.robustness.resnets import resnet_cifar
from convscope.robustness.train_state import read_training_state
from convscope.robustness.training import adversarial_batch, digits_dataset, small_cnn, train
from convscope.testing import assert_untouched, model_state
from helpers import run_torchrun


class Constant(nn.Module):
    """Always predicts ``label`` (a linear layer with a bias only)."""

    def __init__(self, label: int, classes: int = 3):
        super().__init__()
        self.head = nn.Linear(1, classes)
        with torch.no_grad():
            self.head.weight.zero_()
            self.head.bias.copy_(torch.nn.functional.one_hot(torch.tensor(label), classes).float())

    def forward(self, x):
        return self.head(x.mean(dim=(1, 2, 3))[:, None])


def test_ce_and_mce_follow_the_paper_definitions():
    result = CorruptionErrors("m", clean=0.2, errors={"fog": [0.3, 0.4, 0.5, 0.6, 0.7], "contrast": [0.2] * 5})
    base = CorruptionErrors("b", clean=0.4, errors={"fog": [0.5, 0.6, 0.7, 0.8, 0.9], "contrast": [0.4] * 5})
    assert result.corruption_error("fog", base) == pytest.approx(2.5 / 3.5)
    assert result.corruption_error("fog", base, relative=True) == pytest.approx((2.5 - 1.0) / (3.5 - 2.0))
    assert result.mce(base) == pytest.approx((2.5 / 3.5 + 0.5) / 2)
    alexnet_like = CorruptionErrors("a", ALEXNET_CLEAN_ERROR, {name: [e] * 5 for name, e in ALEXNET_ERRORS.items()})
    assert alexnet_like.mce() == pytest.approx(1.0) and alexnet_like.mce(relative=True) == pytest.approx(1.0)
    assert len(ALEXNET_ERRORS) == 15


def test_corruption_errors_counts_mistakes_and_leaves_the_model_alone(tmp_path, small_batch):
    model = Constant(1)
    model.train()
    before = model_state(model)
    labels = torch.tensor([1, 0])  # one right, one wrong whatever the corruption
    result = corruption_errors(model, [(small_batch, labels)], ["fog", "speckle_noise"], [1, 5], progress=False)
    assert result.clean == 0.5 and result.errors == {"fog": [0.5, 0.5], "speckle_noise": [0.5, 0.5]}
    with pytest.raises(ConvscopeError, match="needs all 5 severities"):  # AlexNet's errors average 1-5
        result.mce()
    base = CorruptionErrors("b", 0.25, {"fog": [0.5, 1.0]}, severities=(1, 5))
    assert result.mce(base) == pytest.approx(1.0 / 1.5)  # only fog is a benchmark corruption
    assert_untouched(model, before)
    csv = result.to_csv(tmp_path / "errors.csv").read_text().splitlines()
    assert csv[0].startswith("corruption,error_s1,error_s5,mean_error,ce") and csv[2].startswith("fog,0.5000,0.5000")
    assert result.plot(tmp_path / "errors.png").stat().st_size > 0
    from helpers import png_dpi, png_title, svg_text

    assert png_title(tmp_path / "errors.png").endswith("top-1 error vs severity (0 = clean) on 2 images")
    assert png_dpi(tmp_path / "errors.png") == (300, 300)
    result.plot(tmp_path / "errors.svg")
    assert "top-1 error (fraction)" in svg_text(tmp_path / "errors.svg") and "severity" in svg_text(
        tmp_path / "errors.svg"
    )
    assert "fog (mean 0.50)" in svg_text(tmp_path / "errors.svg")  # each panel says its number
    result.plot(tmp_path / "against.svg", base)  # with a baseline: its CE per panel, the line styles in the title
    assert "(solid) vs b (dashed): top-1 error vs severity" in svg_text(tmp_path / "against.svg")
    assert "fog (mean 0.50, CE 0.67)" in svg_text(tmp_path / "against.svg")


def test_digits_are_rgb_images_with_a_fixed_split():
    train_data, test_data = digits_dataset(16), digits_dataset(16, "test")
    x, y = train_data.tensors
    assert x.shape[1:] == (3, 16, 16) and 0 <= x.min() and x.max() <= 1
    assert len(train_data) + len(test_data) == 1797 and set(y.tolist()) == set(range(10))
    assert torch.equal(digits_dataset(16).tensors[1], y)


@pytest.mark.parametrize("method", ["pgd", "fgsm-rs"])
def test_training_examples_stay_in_the_ball_and_keep_train_mode(method):
    network = small_cnn()
    network.train()
    x, y = digits_dataset(16, "test").tensors
    x, y = x[:8], y[:8]
    x_adv = adversarial_batch(network, x, y, method, eps=0.1, generator=torch.Generator().manual_seed(0))
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    assert not torch.equal(x_adv, x)
    assert network.training and all(p.requires_grad for p in network.parameters())
    with pytest.raises(ConvscopeError, match="adversarial"):
        adversarial_batch(network, x, y, "fgsm", eps=0.1)


def test_adversarial_training_beats_standard_training_under_pgd(tmp_path):
    torch.manual_seed(0)
    train_data, test_data = digits_dataset(16), digits_dataset(16, "test")
    results = {}
    for method in (None, "fgsm-rs"):
        torch.manual_seed(0)
        network = small_cnn()
        history = train(
            network,
            train_data,
            test_data,
            epochs=3,
            adversarial=method,
            eps=0.1,
            recipe=Recipe("adam", lr=3e-3, schedule="constant"),
            eval_steps=10,
            eval_size=120,
            checkpoint=tmp_path / f"{method}.safetensors",
            progress=False,
        )
        results[method] = history.final
        assert len(history.epochs) == 3 and not network.training
        saved = json.loads((tmp_path / f"{method}.json").read_text())  # the training state's description
        assert saved["history"][-1]["clean_accuracy"] == history.final.clean_accuracy
    # seed 0 at threads 1/2/4: clean 0.942; robust accuracy FGSM-RS - standard 0.31-0.32
    assert results[None].clean_accuracy > 0.85
    assert results["fgsm-rs"].robust_accuracy > results[None].robust_accuracy + 0.1


def test_train_runs_data_parallel_under_torchrun_with_gloo(tmp_path):
    """A real architecture (PreAct-ResNet with BatchNorm) under DDP: both ranks end with the same weights
    and statistics, and the rank-sharded evaluation (PGD and AutoAttack) equals a single-process one."""
    script = tmp_path / "ddp.py"
    script.write_text(
        textwrap.dedent(f"""
        import json, torch, torch.distributed as dist
        from torch.utils.data import Subset
        from convscope.robustness.evaluation import evaluate_robustness
        from convscope.robustness.resnets import resnet_cifar
        from convscope.robustness.training import digits_dataset, train
        torch.set_num_threads(1)
        torch.manual_seed(0)
        network = resnet_cifar(10, depth=10, width=8)
        test = digits_dataset(8, "test")
        history = train(network, Subset(digits_dataset(8), range(128)), test, epochs=1, adversarial="pgd", eps=0.1,
                        steps=1, eval_steps=2, eval_size=40, batch_size=32, progress=False,
                        checkpoint=r"{tmp_path}/ddp.safetensors")
        pgd = evaluate_robustness(network, test, 0.1, "pgd", steps=2, limit=40, batch_size=8)
        auto = evaluate_robustness(network, test, 0.1, "autoattack", steps=2, queries=10, limit=24, batch_size=8)
        total = sum(float(t.double().sum()) for t in network.state_dict().values())
        open(r"{tmp_path}/rank%d.txt" % dist.get_rank(), "w").write(json.dumps([
            total, history.final.clean_accuracy, dist.get_world_size(), pgd.as_dict(), auto.as_dict()]))
        dist.barrier()  # both ranks are done before either closes its gloo sockets (a teardown race aborted rank 1 once)
        dist.destroy_process_group()
    """)
    )
    run = run_torchrun(str(script))
    assert run.returncode == 0, run.stderr[-6000:]
    ranks = [json.loads((tmp_path / f"rank{r}.txt").read_text()) for r in (0, 1)]
    for record in ranks:
        for result in record[3:]:
            result.pop("seconds")
    assert ranks[0] == ranks[1]  # same weights, BatchNorm statistics and (all-reduced) accuracies on both ranks
    assert ranks[0][2] == 2
    state = read_training_state(tmp_path / "ddp.safetensors")
    assert {"rng.0.attack", "rng.1.attack"} <= set(state.tensors) and state.meta["settings"]["world_size"] == 2
    network = resnet_cifar(10, depth=10, width=8)
    network.load_state_dict({k[len("model.") :]: v for k, v in state.tensors.items() if k.startswith("model.")})
    network.eval()
    test = digits_dataset(8, "test")
    single = [
        evaluate_robustness(network, test, 0.1, "pgd", steps=2, limit=40, batch_size=8).as_dict(),
        evaluate_robustness(network, test, 0.1, "autoattack", steps=2, queries=10, limit=24, batch_size=8).as_dict(),
    ]
    for result in single:
        result.pop("seconds")
    assert single == ranks[0][3:]  # the sharded evaluation equals the single-process one


def test_bpda_is_straight_through_and_eot_averages_the_draws():
    linear = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
    x = torch.rand(2, 3, 4, 4, requires_grad=True)
    defended = DefendedModel(linear, DEFENSES.get("bit_depth")(2), bpda=True)
    output = defended(x)
    assert torch.allclose(output, linear(torch.round(x * 3) / 3))
    (gradient,) = torch.autograd.grad(output[:, 0].sum(), x)
    assert torch.allclose(gradient, linear[1].weight[0].view(1, 3, 4, 4).expand(2, -1, -1, -1))
    (naive,) = torch.autograd.grad(
        DefendedModel(linear, DEFENSES.get("bit_depth")(2))(x)[:, 0].sum(), x, allow_unused=True
    )
    assert naive is None or naive.abs().max() == 0  # rounding hides the gradient: why naive attacks fail

    noisy = DefendedModel(linear, DEFENSES.get("gaussian_noise")(0.5), generator=torch.Generator().manual_seed(1))
    draws = torch.stack([noisy(x).log_softmax(-1) for _ in range(4)]).mean(0)
    noisy.generator.manual_seed(1)
    assert torch.allclose(ExpectationOverTransformation(noisy, 4)(x), draws)


@pytest.mark.parametrize("name", DEFENSES.names(acts_on="input"))
def test_every_defense_keeps_shape_and_range(name, small_batch):
    defense = DEFENSES.get(name)()
    out = defense.apply(small_batch, torch.Generator().manual_seed(0))
    assert out.shape == small_batch.shape and out.min() >= 0 and out.max() <= 1
    assert (out - small_batch).abs().mean() > 0


def test_sap_keeps_what_it_draws_and_divides_by_its_survival_probability():
    # one draw (ratio 1/4 of 4 activations) from p = |a| / sum |a| = (0.75, 0.25, 0, 0): the survivor is
    # divided by 1 - (1 - p)^1 = p, so it becomes sum |a| = 4 (the expectation a is kept), the rest is 0
    sap = StochasticActivationPruning(nn.Sequential(nn.ReLU()), ratio=0.25, generator=torch.Generator().manual_seed(0))
    activations = torch.tensor([[3.0, 1.0, 0.0, 0.0]]).repeat(4000, 1)
    pruned = sap.prune(activations)
    assert ((pruned == torch.tensor([4.0, 0, 0, 0])).all(1) | (pruned == torch.tensor([0, 4.0, 0, 0])).all(1)).all()
    assert float((pruned[:, 0] > 0).float().mean()) == pytest.approx(0.75, abs=0.03)  # binomial sd 0.007
    # r = d = 4 draws: survival 1 - (1 - p)^4; the mean over draws is the input; an all-zero image stays 0
    sap.ratio = 1.0
    many = sap.prune(torch.tensor([[3.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]).repeat(4000, 1)).view(4000, 2, 4)
    torch.testing.assert_close(many[:, 0].mean(0), torch.tensor([3.0, 1.0, 0, 0]), atol=0.06, rtol=0)
    values = many[:, 0, 1].unique()  # 0 or 1 / (1 - 0.75^4); the mean's sd is 0.011 for this entry
    assert len(values) == 2 and values[0] == 0 and float(values[1]) == pytest.approx(1 / (1 - 0.75**4))
    assert (many[:, 1] == 0).all()


def test_sap_wraps_any_cnn_batched_seeded_and_leaves_it_as_it_was():
    torch.manual_seed(0)
    network = small_cnn().train()
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    before = model_state(network)
    defended = DEFENSES.get("sap")().wrap(network, torch.Generator().manual_seed(0))
    assert defended.layers == ["1", "4"]  # every ReLU of small_cnn
    first = defended(x)
    assert_untouched(network, before)  # no hook left, mode and requires_grad as they were
    defended.generator.manual_seed(0)
    assert torch.equal(defended(x), first)  # a seeded generator reproduces the draws
    assert not torch.equal(defended(x), first)  # and each call is a fresh draw
    other = x.clone()
    other[1:] = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    defended.generator.manual_seed(0)
    assert torch.equal(defended(other)[0], first[0])  # each image is pruned on its own
    inputs = x.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(defended(inputs)[:, 0].sum(), inputs)
    assert torch.isfinite(gradient).all() and gradient.abs().sum() > 0  # the exact gradient of one draw
    with pytest.raises(ConvscopeError, match="no activation modules"):
        StochasticActivationPruning(nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 2)))
    with pytest.raises(ConvscopeError, match="ratio must be positive"):
        StochasticActivationPruning(network, ratio=0)
    assert DEFENSES.names(acts_on="activations") == ["sap"]


def test_adaptive_attack_breaks_the_defenses_the_naive_one_does_not(model, small_batch):
    """Real model, real photos: bit-depth reduction survives naive PGD at 2/255 better than BPDA."""
    before = model_state(model)
    labels = model(small_batch).argmax(-1)
    result = evaluate_defense(model, "bit_depth", small_batch, labels, eps=2 / 255, steps=3)
    assert result.adaptive_accuracy <= result.naive_accuracy
    assert result.adaptive_accuracy == 0.0 and result.adaptive_attack == "PGD-3 + BPDA"
    # worst case per image: correct clean and under both attacks
    assert result.correct.shape == (3, 2)
    assert result.worst_case_accuracy == float(result.correct.all(0).float().mean())
    assert result.worst_case_accuracy <= min(result.clean_accuracy, result.naive_accuracy, result.adaptive_accuracy)
    assert_untouched(model, before)


def test_trades_maximises_the_kl_inside_the_ball_and_trains():
    import torch.nn.functional as F
    from torch.utils.data import Subset

    from convscope.robustness.training import trades_batch, trades_loss

    torch.manual_seed(0)
    network = small_cnn()
    x, y = digits_dataset(16, "test").tensors
    x, y = x[:32], y[:32]
    network.train()
    generator = torch.Generator().manual_seed(0)
    adv = trades_batch(network, x, 0.1, steps=5, generator=generator)
    assert network.training and (adv - x).abs().amax() <= 0.1 + 1e-6
    with torch.no_grad():
        network.eval()
        natural = network(x).softmax(-1)
        kl = F.kl_div(network(adv).log_softmax(-1), natural, reduction="sum")
        # a random point of the same ball (TRADES' start, 0.001 N(0, 1), has a KL of ~1e-9 that float
        # rounding makes negative: no baseline)
        noise = 0.1 * (2 * torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) - 1)
        random_point = F.kl_div(network((x + noise).clamp(0, 1)).log_softmax(-1), natural, reduction="sum")
        network.train()
    # the inner maximisation beats a random point of the ball: 76-99 x over seeds 0-4 x threads 1/2/4
    assert kl > 10 * random_point
    assert torch.isfinite(trades_loss(network, x, adv, y))
    history = train(
        network,
        Subset(digits_dataset(16), range(128)),
        Subset(digits_dataset(16, "test"), range(32)),
        epochs=1,
        adversarial="trades",
        eps=0.1,
        steps=2,
        eval_steps=2,
        progress=False,
    )
    assert history.adversarial == "trades" and 0 <= history.final.robust_accuracy <= history.final.clean_accuracy
