"""APGD, FAB and the AutoAttack protocol: the paper's pieces by hand, and robust accuracy against
torchattacks' APGD / APGDT / FAB on an adversarially trained digits model (120 test digits)."""

import warnings

import pytest
import torch

from convscope.attacks import attack
from convscope.attacks.apgd import apgd, apgd_targeted, checkpoints, dlr_loss, dlr_targeted_loss
from convscope.attacks.autoattack import autoattack, wilson_interval
from convscope.attacks.fab import fab_targeted, project_halfspace_box
from convscope.attacks.gradient import pgd
from convscope.errors import ConvscopeError
from convscope.testing import assert_untouched, model_state

torchattacks = pytest.importorskip("torchattacks")
EPS = 0.1


@pytest.fixture(scope="module")
def digits_model():
    """small_cnn, 3 epochs of FGSM-RS training at eps 0.1 (113/120 clean, ~59/120 under APGD-CE)."""
    from convscope.robustness.recipe import Recipe
    from convscope.robustness.training import digits_dataset, small_cnn, train

    torch.manual_seed(0)
    network = small_cnn()
    train(
        network,
        digits_dataset(),
        digits_dataset(split="test"),
        epochs=3,
        adversarial="fgsm-rs",
        eps=EPS,
        recipe=Recipe("adam", lr=3e-3, schedule="constant"),
        eval_steps=0,
        progress=False,
    )
    x, y = digits_dataset(split="test").tensors
    return network, x[:120], y[:120]


def correct(network, x, y):
    with torch.no_grad():
        return int((network(x).argmax(-1) == y).sum())


def test_checkpoints_and_dlr_follow_the_paper():
    # p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06): 0.22, 0.41, 0.57, 0.70, 0.80, 0.87, 0.93, 0.99
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    logits = torch.tensor([[3.0, 1.0, 0.0, -1.0], [0.0, 2.0, 1.0, 5.0]])
    y = torch.tensor([0, 1])
    # image 0: -(3 - 1) / (3 - 0); image 1: -(2 - 5) / (5 - 1)
    torch.testing.assert_close(dlr_loss(logits, y), torch.tensor([-2 / 3, 3 / 4]))
    # targeted towards class 2 / 0: -(z_y - z_t) / (z_π1 - (z_π3 + z_π4) / 2)
    torch.testing.assert_close(
        dlr_targeted_loss(logits, y, torch.tensor([2, 0])),
        torch.tensor([-3 / (3 - (0 - 1) / 2), -2 / (5 - (1 + 0) / 2)]),
    )
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)  # the textbook value


def test_projection_onto_hyperplane_and_box_matches_the_closed_form():
    g = torch.Generator().manual_seed(0)
    point = torch.full((3, 50), 0.5)
    w = torch.randn(3, 50, generator=g)
    b = torch.tensor([0.05, 0.1, -1.0])  # the last one is already on the far side
    linf = project_halfspace_box(point, w, b, "inf")  # box inactive: δ = b / ||w||_1 · sign(w)
    expected = (b.clamp_min(0) / w.abs().sum(1))[:, None] * w.sign()
    torch.testing.assert_close(linf, expected, atol=1e-6, rtol=1e-4)
    l2 = project_halfspace_box(point, w, b, "2")  # box inactive: δ = b w / ||w||²
    torch.testing.assert_close(l2, (b.clamp_min(0) / (w * w).sum(1))[:, None] * w, atol=1e-6, rtol=1e-4)
    # with an active box the constraint still holds and no coordinate leaves [0, 1]
    far = project_halfspace_box(point, w, torch.tensor([5.0, 5.0, 5.0]), "2")
    assert ((far + point) >= -1e-6).all() and ((far + point) <= 1 + 1e-6).all()
    assert ((far * w).sum(1) >= 5.0 - 1e-3).all()


def test_apgd_and_fab_agree_with_torchattacks_on_robust_digits(digits_model):
    network, x, y = digits_model
    before = model_state(network)
    g = torch.Generator().manual_seed(0)
    # measured over seeds 0-4 (1 thread): PGD-20 60-61, APGD-CE ours 59-60 / torchattacks 59-60,
    # APGD-DLR ours 57-59 / torchattacks 56-57, APGD-T (9 targets) 53 / 53, FAB-T 53 / 53 (of 113 clean).
    # Seed 0 at threads 1/2/4 (the model is trained at that count too): ours - torchattacks APGD-CE
    # -1/-1/0, APGD-DLR +2/+1/+1, APGD-T 0, FAB-T 0; PGD-20 - APGD-CE 2/4/1. Bounds: within 3 of 113
    # (APGD-CE and APGD-T were within 1: at the measured worst case, no margin)
    pgd20 = correct(network, pgd(network, x, y, EPS, steps=20, generator=g), y)
    ce = correct(network, apgd(network, x, y, EPS, steps=20, generator=g)[0], y)
    assert abs(ce - correct(network, torchattacks.APGD(network, eps=EPS, steps=20, seed=0)(x, y), y)) <= 3
    assert ce <= pgd20
    dlr = correct(network, apgd(network, x, y, EPS, steps=20, loss="dlr", generator=g)[0], y)
    assert abs(dlr - correct(network, torchattacks.APGD(network, eps=EPS, steps=20, seed=0, loss="dlr")(x, y), y)) <= 3
    targeted = correct(network, apgd_targeted(network, x, y, EPS, steps=20, generator=g)[0], y)
    assert abs(targeted - correct(network, torchattacks.APGDT(network, eps=EPS, steps=20, seed=0)(x, y), y)) <= 3
    adv, norms = fab_targeted(network, x, y, EPS, steps=20)
    with torch.no_grad():
        clean = network(x).argmax(-1) == y
    assert (norms[~clean] == 0).all() and (norms[clean] > 0).all()  # misclassified images need no perturbation
    fab_correct = correct(network, torch.where((norms <= EPS).view(-1, 1, 1, 1), adv, x), y)
    reference = torchattacks.FAB(network, eps=EPS, steps=20, multi_targeted=True, seed=0)(x, y)
    assert abs(fab_correct - correct(network, reference, y)) <= 3
    assert_untouched(network, before)


def test_autoattack_runs_each_attack_on_the_survivors_and_records_who_broke_what(digits_model):
    network, x, y = digits_model
    x, y = x[:16], y[:16]
    result = autoattack(network, x, y, EPS, steps=10, queries=50, seed=0)
    assert [name for name, _, _ in result.stages] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    curve = [result.clean_accuracy] + [accuracy for _, accuracy, _ in result.stages]
    assert all(a >= b for a, b in zip(curve, curve[1:]))  # each stage only removes survivors
    assert result.robust_accuracy == curve[-1] < result.clean_accuracy
    with torch.no_grad():
        predicted = network(result.x_adv).argmax(-1)
    assert torch.equal(result.robust, predicted == y)
    assert [b is None for b in result.broken_by] == result.robust.tolist()
    assert {b for b in result.broken_by} <= {None, "clean", "apgd-ce", "apgd-t", "fab-t", "square"}
    assert (result.x_adv - x).abs().amax() <= EPS + 1e-6
    low, high = result.interval()
    assert low < result.robust_accuracy < high
    again = autoattack(network, x, y, EPS, steps=10, queries=50, seed=0)
    assert torch.equal(again.x_adv, result.x_adv)
    with pytest.raises(ConvscopeError):
        autoattack(network, x, y, EPS, version="fast")


def test_pgd_default_step_reaches_the_ball_and_a_short_budget_warns(digits_model):
    network, x, y = digits_model
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pgd(network, x[:4], y[:4], EPS, steps=10)  # default alpha = 2.5 eps / steps
    with pytest.warns(RuntimeWarning, match="cannot reach the edge"):
        pgd(network, x[:4], y[:4], EPS, alpha=2 / 255, steps=10)  # the old default: 10 x 2/255 < 0.1
    result = attack(network, x[:8], y[:8], method="apgd-t", eps=EPS, steps=5, top=3, seed=0)
    assert (result.linf <= EPS + 1e-6).all()


def test_l2_plus_and_rand_versions_run_their_stages(digits_model):
    from convscope.robustness.defenses import DefendedModel, gaussian_noise_defense

    network, x, y = digits_model
    x, y = x[:8], y[:8]
    l2 = autoattack(network, x, y, 1.0, norm="2", steps=3, queries=20, seed=0)
    assert [name for name, _, _ in l2.stages] == ["apgd-ce", "apgd-t", "fab-t", "square"]  # Square's L2 version
    assert ((l2.x_adv - x).flatten(1).norm(dim=1) <= 1.0 + 1e-5).all()
    plus = autoattack(network, x, y, EPS, version="plus", steps=3, queries=20, seed=0)
    assert [name for name, _, _ in plus.stages] == ["apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"]
    assert (plus.x_adv - x).abs().amax() <= EPS + 1e-6
    noisy = DefendedModel(network, gaussian_noise_defense(0.05), generator=torch.Generator().manual_seed(0))
    rand = autoattack(noisy, x, y, EPS, version="rand", steps=3, eot=2, seed=0)
    assert [name for name, _, _ in rand.stages] == ["apgd-ce", "apgd-dlr"]
    assert (rand.x_adv - x).abs().amax() <= EPS + 1e-6


def test_full_autoattack_agrees_with_torchattacks_autoattack(digits_model):
    network, x, y = digits_model
    x, y = x[:60], y[:60]
    # All four stages on both sides at equal budgets: torchattacks' AutoAttack builds APGD, APGD-T and FAB at
    # 10 steps; its Square is cut from 5000 to 500 queries here, and ours runs the same (steps=10, queries=500).
    # Measured 2026-12-02 (58 of the 60 digits clean), robust digits ours / theirs: seeds 0-4 at 1 thread
    # 27-27 / 27-27, at 4 threads 27-28 / 27-27, at 2 threads 27-27 / 27-27 (after APGD-CE ours 29-30 at
    # every seed). Differences 0-1 over the 15 runs: the bound is 2.
    ours = autoattack(network, x, y, EPS, steps=10, queries=500, seed=0)
    reference = torchattacks.AutoAttack(network, eps=EPS, n_classes=10, seed=0)
    stages = reference._autoattack.attacks  # APGD, APGDT, FAB, Square: its MultiAttack's list, in its order
    assert [type(stage).__name__ for stage in stages] == ["APGD", "APGDT", "FAB", "Square"]
    assert all(stage.steps == 10 for stage in stages[:3])
    stages[3].n_queries = 500
    theirs = correct(network, reference(x, y), y)
    assert abs(int(ours.robust.sum()) - theirs) <= 2
    assert ours.robust_accuracy < ours.clean_accuracy


@pytest.fixture(scope="module")
def standard_digits():
    """small_cnn, 3 epochs of standard training (the randomised defense goes in front of it)."""
    from convscope.robustness.recipe import Recipe
    from convscope.robustness.training import digits_dataset, small_cnn, train

    torch.manual_seed(0)
    network = small_cnn()
    recipe = Recipe("adam", lr=3e-3, schedule="constant")
    train(
        network, digits_dataset(), digits_dataset(split="test"), epochs=3, recipe=recipe, eval_steps=0, progress=False
    )
    x, y = digits_dataset(split="test").tensors
    return network.eval(), x[:60], y[:60]


def test_a_randomised_defense_is_flagged_and_rand_attacks_its_expected_decision(standard_digits):
    from convscope.attacks.masking import check_gradient_masking
    from convscope.robustness.defenses import DefendedModel, resize_pad_defense

    network, x, y = standard_digits
    defended = DefendedModel(network, resize_pad_defense(0.9), generator=torch.Generator().manual_seed(0))
    with pytest.warns(RuntimeWarning, match="randomised model"):
        report = check_gradient_masking(defended, x[:8], y[:8], 0.05, steps=2, queries=10)
    assert [c.name for c in report.checks if not c.passed] == ["the model is deterministic"]
    plain = check_gradient_masking(network, x[:8], y[:8], 0.05, steps=2, queries=10, warn=False)
    assert plain.checks[-1].passed

    def expected_correct(images):  # a random model's accuracy is a mean over draws (10 fresh ones)
        with torch.no_grad():
            return sum(int((defended(images).argmax(-1) == y).sum()) for _ in range(10)) / 10

    single_draw = autoattack(defended, x, y, 0.05, attacks=("apgd-ce", "apgd-dlr"), steps=20, seed=0)
    rand = autoattack(defended, x, y, 0.05, version="rand", steps=20, eot=20, seed=0)
    # Measured 2026-12-02 (1 thread, seeds 0-4, eps 0.05, 60 digits; expected correct of 60 over 10 fresh draws):
    # clean 44.7-53.1; the same two APGD stages without EOT 38.9-46.2 (their single-draw record says 16-36:
    # a lucky draw counted as broken); rand 35.5-39.0 (record 40-43); naive PGD-20 on the defended model
    # 34.1-37.3. rand - single draw: -7.2, 0.0, -7.2, -6.0, -5.0. So rand is never weaker than the same
    # attacks without EOT, but it is not clearly stronger than plain PGD-20 here: this defense barely masks.
    # clean - rand: 13.4, 5.8, 8.9, 13.8, 17.6.
    assert expected_correct(rand.x_adv) <= expected_correct(single_draw.x_adv) + 1
    assert expected_correct(rand.x_adv) < expected_correct(x) - 5


def test_attack_eval_on_the_digits_spec_with_a_limit(digits_model, monkeypatch, capsys, tmp_path):
    # the CLI route of the README's ladders: `attack-eval digits -m CHECKPOINT --limit N` sees the
    # images `convscope train digits` was tested on, and only the first N
    import json

    from convscope.data import open_dataset
    from convscope.models import save_checkpoint
    from convscope.robustness.architectures import training_classifier
    from tests.helpers import run_cli

    network, x, y = digits_model
    spec = open_dataset("digits", 16)
    assert len(spec) == 360 and len(open_dataset("digits-train", 16)) == 1437
    image, label, _ = spec[7]
    assert torch.equal(image, x[7]) and label == int(y[7])
    classifier = training_classifier("small_cnn", 10, 16)
    classifier.network.load_state_dict(network.state_dict())
    path = save_checkpoint(classifier, tmp_path / "digits.safetensors")
    out = tmp_path / "entry.json"
    code, _, err = run_cli(
        monkeypatch,
        capsys,
        *("attack-eval", "digits", "-m", str(path), "--limit", "10", "--method", "fgsm", "--eps", "0.1"),
        *("--device", "cpu", "--json", str(out)),
    )
    assert code == 0, err
    entry = json.loads(out.read_text())
    assert entry["totals"]["images"] == 10
    assert entry["clean_acc"] == round(100 * correct(network, x[:10], y[:10]) / 10, 2)


@pytest.mark.threads
def test_rand_breaks_stochastic_activation_pruning_where_naive_pgd_does_not(standard_digits):
    """SAP at ratio 0.2 (Dhillon 2018) fools an attacker that follows one draw's gradient; AutoAttack rand
    (EOT over the draws) does not get fooled (Athalye 2018's lesson, on a defense inside the network)."""
    from convscope.robustness.defenses import sap_defense

    network, x, y = standard_digits
    x, y = x[:30], y[:30]
    defended = sap_defense(0.2).wrap(network, torch.Generator().manual_seed(0))

    def expected_correct(images):  # of 30, the mean over 10 fresh draws
        with torch.no_grad():
            return sum(int((defended(images).argmax(-1) == y).sum()) for _ in range(10)) / 10

    naive = pgd(defended, x, y, EPS, 2.5 * EPS / 10, 10, generator=torch.Generator().manual_seed(0))
    rand = autoattack(defended, x, y, EPS, version="rand", steps=10, eot=10, seed=0)
    # Measured 2026-12-02, seeds 0-4 x 1, 2 and 4 threads (15 runs): clean 26.2-27.6, naive PGD-10
    # 18.4-19.9, rand 11.4-14.5; naive - rand 4.5-8.0.
    assert expected_correct(rand.x_adv) < expected_correct(naive) - 2
    assert expected_correct(rand.x_adv) < expected_correct(x) - 8
