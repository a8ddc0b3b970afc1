"""The registries: metadata next to each entry, filters, one spelling, option checks, and the
display rules every surface (CLI, report, web app) reads from one place."""

import numpy as np
import pytest
import torch
from torch import nn

from convscope.attacks import ATTACKS, attack, attack_options
from convscope.attacks.figure import perturbation_picture
from convscope.attribution import METHODS, STOCHASTIC, display_mode, quick_options
from convscope.errors import ConvscopeError
from convscope.images import to_uint8
from convscope.registry import Registry
from convscope.attacks.figure import attack_pictures
from convscope.server import features


def test_metadata_defaults_filters_and_spelling():
    registry = Registry("thing", kind="plain", fast=False)

    @registry.register(kind="fancy", fast=True)
    def first_thing():
        return 1

    @registry.register("second-thing")
    def other():
        return 2

    assert registry.names() == ["first_thing", "second_thing"]  # kebab-case is stored as snake_case
    assert registry.get("second-thing") is other and "second-thing" in registry
    assert dict(registry.meta("first_thing")) == {"kind": "fancy", "fast": True}
    assert registry.meta("second_thing")["kind"] == "plain"  # the family's default
    assert registry.names(kind="fancy") == ["first_thing"] and registry.names(fast=lambda v: not v) == ["second_thing"]
    assert [entry.function() for entry in registry.entries()] == [1, 2]
    with pytest.raises(TypeError):
        registry.meta("first_thing")["kind"] = "changed"  # read-only
    with pytest.raises(ValueError, match="twice"):
        registry.register("first_thing")(other)
    with pytest.raises(ConvscopeError, match="did you mean first_thing"):
        registry.get("first_thin")


def test_every_family_is_snake_case_and_described():
    from convscope.dissect.engines import ENGINES
    from convscope.report import REPORT_SECTIONS
    from convscope.robustness.corruptions import CORRUPTIONS
    from convscope.robustness.defenses import DEFENSES
    from convscope.registry import import_submodules
    from convscope.tour import TOUR_STEPS

    import_submodules("convscope.commands")  # the tour steps live next to their commands

    for registry in (METHODS, ATTACKS, CORRUPTIONS, DEFENSES, REPORT_SECTIONS, TOUR_STEPS, ENGINES):
        assert len(registry) > 0
        assert all(name == name.lower() and "-" not in name and " " not in name for name in registry), registry
    assert set(METHODS.names(kind="cam")) == {
        "cam",
        "gradcam",
        "gradcam_pp",
        "guided_gradcam",
        "hirescam",
        "xgradcam",
        "layercam",
        "scorecam",
        "ablationcam",
        "eigencam",
        "fullgrad",
    }
    assert STOCHASTIC == {"smoothgrad", "smoothgrad_sq", "gradient_shap", "kernel_shap", "lime"}
    assert all(ATTACKS.meta(name)["norm"] in ("linf", "l2", "l1", "l0") for name in ATTACKS)
    assert all(ATTACKS.meta(name)["eps"] is not None for name in ATTACKS.names(uses_eps=True))
    assert features.attack_methods() == ["fgsm", "bim", "pgd"]


def test_attack_options_are_checked_against_the_signature():
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    with pytest.raises(ConvscopeError, match=r"attack 'pgd' has no option stpes \(did you mean steps\?\)"):
        attack(net, x, method="pgd", stpes=3)
    with pytest.raises(ConvscopeError, match="has no option norm"):  # set by the entry itself
        attack(net, x, method="pgd_l2", norm="inf", steps=1)
    assert "steps" in attack_options("bim") and "random_start" not in attack_options("bim")
    result = attack(net, x, method="pgd-l2", steps=1, seed=0)  # the old spelling still works
    assert result.method == "pgd_l2" and result.eps == ATTACKS.meta("pgd_l2")["eps"]


def test_one_display_rule_for_maps_and_perturbations(monkeypatch):
    # occlusion used to be min-max in the CLI and |value|/p99.5 in the report and the app; it is signed
    # (a score drop can be negative: hiding a patch can raise the score), drawn diverging around 0
    assert display_mode("gradcam") == "minmax" and display_mode("occlusion") == "signed"
    assert display_mode("saliency") == display_mode("guided_gradcam") == "abs"
    import inspect

    import convscope.commands.explain as explain

    # the CLI has no rule of its own: it draws with the attribution package's display_mode
    source = inspect.getsource(explain)
    assert "def display_mode" not in source and "from ..attribution import attribute, display_mode" in source
    assert quick_options("integrated_gradients") == {"steps": 16}
    # the attack figure scaled the perturbation by its peak, the report by eps: now both by eps (L∞)
    x = torch.full((1, 3, 8, 8), 0.5)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    result = attack(net, x, method="pgd", eps=8 / 255, steps=1, alpha=1 / 255, random_start=False, seed=0)
    shown, gain = perturbation_picture(result)
    assert gain == pytest.approx(0.5 * 255 / 8)  # the budget, not the 1/255 peak of one step
    _, drawn, _ = attack_pictures(result)
    assert (np.asarray(drawn) == to_uint8(shown)).all()


def test_one_progress_bar_draws_nothing_when_off_and_stops_cleanly_on_ctrl_c():
    from convscope.progress import progress_bar

    done = []
    with progress_bar(3, "off", enabled=False) as advance:
        advance(2, "note")
        done.append(1)
    assert done == [1]
    with pytest.warns(RuntimeWarning, match="loop: interrupted; keeping the results so far"):
        with progress_bar(3, "loop", enabled=True) as advance:
            advance()
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt), progress_bar(3, "report", enabled=False, interrupted=None):
        raise KeyboardInterrupt
