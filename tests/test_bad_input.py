"""Bad input is one clear line: CLI usage errors and bad values exit 2 before anything is
computed; every public function taking images raises ConvscopeError for a bad tensor.

The per-command cases are generated from the commands themselves (every number option, every
float option, every output path), so a new command is covered without editing this file.
"""

from __future__ import annotations

import pytest
import torch
from helpers import run_cli

import convscope
from convscope.cli import all_commands
from convscope.cli_checks import RANGES, Range, check_output, number_params, output_kind, param_rule
from convscope.errors import ConvscopeError

COMMANDS = all_commands()
NUMBERS = list(number_params(COMMANDS))


def _one_clean_line(code: int, err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip() and not line.startswith("warning:")]
    assert code == 2, (code, err)
    assert len(lines) == 1 and "Traceback" not in err and "internal error" not in err, err
    return lines[0]


def test_every_number_option_has_a_range():
    """A command that gains an int option must declare its range in convscope.cli_checks.RANGES."""
    missing = [
        f"{path} --{param.name}" for path, param, base in NUMBERS if base is int and param_rule(path, param) is None
    ]
    assert not missing, f"add these to RANGES or COMMAND_RANGES: {missing}"
    for path, param, _ in NUMBERS:  # and every default passes its own rule
        rule = param_rule(path, param) or Range()
        if isinstance(param.default, (int, float)) and not isinstance(param.default, bool):
            assert rule.check(param.default) is None, (path, param.name, param.default)


def _below(rule: Range, base) -> str:
    value = rule.low if rule.low_open else rule.low - 1
    return str(int(value)) if base is int else str(value)


BELOW = [
    (path, param.opts[0], _below(param_rule(path, param), base))
    for path, param, base in NUMBERS
    if isinstance(param_rule(path, param), Range)
    and param_rule(path, param).low is not None
    and param.opts[0].startswith("-")
]
FLOATS = [(path, param.opts[0]) for path, param, base in NUMBERS if base is float and param.opts[0].startswith("-")]
SUFFIX = {
    "image": ".png",
    "html": ".html",
    "array": ".npy",
    "checkpoint": ".safetensors",
    "folder": "",
    "image_or_folder": "",
}
OUTPUTS = [
    (path, param.opts[0], param_rule(path, param))
    for path, command in COMMANDS.items()
    for param in command.params
    if (param_rule(path, param) in ("image", "html", "array", "checkpoint", "folder", "image_or_folder"))
    and param.opts[0].startswith("-")
]


def test_the_generated_cases_cover_every_command_family():
    assert len(BELOW) > 40 and len(FLOATS) > 10 and len(OUTPUTS) > 20
    assert {path for path, *_ in BELOW} >= {"predict", "attack", "explain", "segment train", "serve"}


@pytest.mark.parametrize("path, option, value", BELOW, ids=[f"{p} {o} {v}" for p, o, v in BELOW])
def test_a_number_below_its_range_is_a_usage_error(monkeypatch, capsys, path, option, value):
    line = _one_clean_line(*run_cli(monkeypatch, capsys, *path.split(), f"{option}={value}")[::2])
    assert option in line and "Missing" not in line


@pytest.mark.parametrize("path, option", FLOATS, ids=[f"{p} {o}" for p, o in FLOATS])
@pytest.mark.parametrize("value", ["nan", "inf"])
def test_a_float_that_is_not_finite_is_a_usage_error(monkeypatch, capsys, path, option, value):
    line = _one_clean_line(*run_cli(monkeypatch, capsys, *path.split(), f"{option}={value}")[::2])
    assert option in line and "finite" in line


@pytest.mark.parametrize("path, option, kind", OUTPUTS, ids=[f"{p} {o}" for p, o, _ in OUTPUTS])
def test_an_output_under_a_file_is_refused_before_computing(monkeypatch, capsys, tmp_path, path, option, kind):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    target = blocker / f"out{SUFFIX[kind]}"
    line = _one_clean_line(*run_cli(monkeypatch, capsys, *path.split(), option, str(target))[::2])
    assert "is a file" in line


def test_output_paths(tmp_path):
    (tmp_path / "f").write_text("x")
    for bad, kind in [
        (tmp_path / "x.foo", "image"),
        (tmp_path / "f" / "x.png", "image"),
        (tmp_path / "f", "folder"),
        (tmp_path / "r.png", "html"),
        ("/proc/x.png", "image"),
        (tmp_path, "image"),
    ]:
        with pytest.raises(ConvscopeError):
            check_output(bad, kind)
    for good, kind in [
        (tmp_path / "new" / "deeper" / "x.png", "image"),
        (tmp_path / "x.JPG", "image"),
        (tmp_path / "r.html", "html"),
        (tmp_path / "out", "folder"),
        (tmp_path / "a.npz", "array"),
    ]:
        assert check_output(good, kind) == good
    assert not (tmp_path / "new").exists()  # checking creates nothing
    assert output_kind("out", "report.html") == "html" and output_kind("out", "tour") == "folder"


# Hand-picked cases from issue 13: each must be one line and exit 2, none computes anything long.
CASES = [
    (["predict", "sample:chelsea", "-k", "abc"], "--topk"),
    (["predict"], "Missing argument"),
    (["predict", "sample:chelsea", "--bogus"], "No such option"),
    (["attack", "sample:chelsea", "--eps", "inf"], "finite"),
    (["attack", "sample:chelsea", "--eps", "2"], "<= 1"),
    (["attack", "sample:chelsea", "--eps", "8/0"], "fraction"),
    (["attack", "sample:chelsea", "--size", "32", "--set", "steps=NaN"], "finite"),
    (["attack", "sample:chelsea", "--size", "32", "--set", "bogus=1"], "no option bogus"),
    (["attack", "sample:chelsea", "--size", "32", "--set", "steps=2.5"], "whole number"),
    (["attack", "sample:chelsea", "--size", "32", "--set", "alpha=-1"], ">= 0"),
    (["attack", "sample:chelsea", "--out", "x.unknown"], "unknown suffix"),
    (["report", "--out", "/proc/x.html"], "cannot write"),
    (["visualize", "-l", "blocks.3", "-c", "5-1"], "ascending"),
    (["visualize", "-l", "blocks.3", "-c", "x"], "--channel"),
    (["explain", "sample:chelsea", "--method", "saliency", "--layer", "bn2"], "takes no layer"),
    (["layers", "os:getcwd"], "not a torch.nn.Module"),
    (["layers", "os:sep"], "not a callable"),
    (["robustness", "samples", "--limit", "0"], "--limit"),
    (["weights", "--max-filters", "-1"], "--max-filters"),
    (["serve", "--max-upload-mb", "-1"], "--max-upload-mb"),
]


@pytest.mark.parametrize("args, expected", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_issue_13_cases(monkeypatch, capsys, args, expected):
    line = _one_clean_line(*run_cli(monkeypatch, capsys, *args)[::2])
    assert expected in line


@pytest.mark.parametrize("content", [b"", b"hello\n", "fake-torchscript"])
def test_bad_model_files(monkeypatch, capsys, tmp_path, content):
    path = tmp_path / "model.pt"
    if content == "fake-torchscript":
        import zipfile

        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("m/constants.pkl", "junk")
            archive.writestr("m/code/x.py", "x")
    else:
        path.write_bytes(content)
    line = _one_clean_line(*run_cli(monkeypatch, capsys, "layers", str(path))[::2])
    assert str(path) in line


# --------------------------------------------------------------------------- Python API
def _api(model):
    """(name, call(x)) for every public function that takes images; each validates first."""
    from convscope.attribution.sanity import sanity_check
    from convscope.predictions import predict

    return [
        ("predict", lambda x: predict(model, x)),
        ("attack", lambda x: convscope.attack(model, x, method="fgsm")),
        ("attribute", lambda x: convscope.attribute(model, x, method="saliency")),
        ("corrupt", lambda x: convscope.corrupt(x, "gaussian_noise", 1)),
        ("top_units", lambda x: convscope.top_units(model, x, "blocks.3")),
        ("dream", lambda x: convscope.dream(model, x, "blocks.3", steps=1, octaves=1)),
        ("invert", lambda x: convscope.invert(model, x, "blocks.3", steps=1)),
        ("stylize content", lambda x: convscope.stylize(model, x, torch.rand(1, 3, 32, 32), steps=1)),
        ("stylize style", lambda x: convscope.stylize(model, torch.rand(1, 3, 32, 32), x, steps=1)),
        ("class_heatmap", lambda x: convscope.class_heatmap(model, x, 285)),
        ("build_report", lambda x: convscope.build_report(model, x)),
        ("sanity_check", lambda x: sanity_check(model, x)),
        ("predict_masks", lambda x: convscope.predict_masks(model, x)),
    ]


BAD = {
    "empty batch": torch.rand(0, 3, 32, 32),
    "NaN": torch.full((1, 3, 32, 32), float("nan")),
    "inf": torch.full((1, 3, 32, 32), float("inf")),
    "uint8": torch.randint(0, 255, (1, 3, 32, 32), dtype=torch.uint8),
    "3-d": torch.rand(3, 32, 32),
    "above 1": torch.rand(1, 3, 32, 32) + 1,
    "not a tensor": [[0.5]],
}
GREY_OK = {"predict_masks"}  # a segmenter may take any number of channels


@pytest.mark.parametrize("case", list(BAD))
def test_every_api_function_refuses_bad_tensors(model, case):
    for name, call in _api(model):
        with pytest.raises(ConvscopeError):
            call(BAD[case])
            pytest.fail(f"{name} accepted a bad tensor ({case})")
    for name, call in _api(model):  # one grey channel (3 expected)
        if name not in GREY_OK:
            with pytest.raises(ConvscopeError, match="channels"):
                call(torch.rand(1, 1, 32, 32))


def test_float64_is_converted_to_float32(model):
    """float64 input runs (converted to float32 by check_images) where it used to raise 'expected scalar type'."""
    from convscope.predictions import predict

    x = torch.rand(1, 3, 32, 32, dtype=torch.float64)
    assert convscope.checks.check_images(x).dtype == torch.float32
    assert predict(model, x, 1)[0][0].probability > 0
    assert convscope.attribute(model, x, method="saliency").dtype == torch.float32
    assert convscope.attack(model, x, method="fgsm", eps=1 / 255).x_adv.dtype == torch.float32
    assert convscope.top_units(model, x, "blocks.3", k=1)
    assert convscope.corrupt(x, "gaussian_noise", 1).shape == x.shape


def test_eps_range():
    assert RANGES["eps"].check(float("inf")) and RANGES["eps"].check(-0.1) and RANGES["eps"].check(1.5)
    assert RANGES["eps"].check(8 / 255) is None


def test_gradcam_on_layers_before_an_in_place_activation_and_on_skipped_layers(model):
    """Layers followed by ReLU6(inplace=True) used to fail with 'leaf Variable ... in-place'
    (33 of the 272 listed layers); a drop_path the network never calls (no shape in the layer
    table) used to be a KeyError: now a map, or one ConvscopeError saying the layer did not run."""
    x = torch.rand(1, 3, 64, 64)
    rows = {row.name: row for row in convscope.layer_table(model, 64)}
    for name in ("conv_stem", "bn1.drop", "blocks.0.0.bn1.drop", "blocks.1.0.bn2.drop", "blocks.1.1.drop_path"):
        heat = convscope.attribute(model, x, 0, method="gradcam", layer=name)
        assert heat.shape == (1, 1, 64, 64) and torch.isfinite(heat).all()
    assert rows["blocks.0.0.drop_path"].output_shape is None
    with pytest.raises(ConvscopeError, match="did not run"):
        convscope.attribute(model, x, 0, method="gradcam", layer="blocks.0.0.drop_path")


def test_a_users_own_hook_raising_is_not_reported_as_an_image_size_problem(model):
    def broken(module, inputs, output):
        raise RuntimeError("my hook is broken")

    handle = convscope.find_layer(model, "blocks.2").register_forward_hook(broken)
    try:
        with pytest.raises(RuntimeError, match="my hook is broken"):
            convscope.layer_table(model, 64)
    finally:
        handle.remove()
    assert convscope.layer_table(model, 64)  # and without it the table is there


def _low_level(model):
    """(name, call(x)) for the lower-level public functions called directly: every attack function,
    the patch, the defenses, the causal curves, the unit tools, every registered attribution method."""
    from convscope.attacks import apgd, autoattack, cw, deepfool, eot, evolution, fab, gradient, patch, rfgsm
    from convscope.attacks import sparse, square, substitute, transferable
    from convscope.attribution import METHODS, quick_options
    from convscope.attribution.evaluate import causal_curve, deletion, insertion
    from convscope.dissect.projection import project_units
    from convscope.optimize import channel, evaluate, representation, robust_scores
    from convscope.robustness.defenses import DEFENSES, DefendedModel, evaluate_defense

    one, heat = torch.tensor([1]), torch.rand(1, 1, 8, 8)
    calls = [
        ("fgsm", lambda x: gradient.fgsm(model, x)),
        ("pgd", lambda x: gradient.pgd(model, x, steps=1)),
        ("bim", lambda x: gradient.bim(model, x, steps=1)),
        ("apgd", lambda x: apgd.apgd(model, x, steps=1)),
        ("apgd_targeted", lambda x: apgd.apgd_targeted(model, x, steps=1, top=1)),
        (
            "autoattack",
            lambda x: autoattack.autoattack(model, x, eps=1 / 255, steps=1, queries=1, attacks=("apgd-ce",)),
        ),
        ("cw", lambda x: cw.cw(model, x, steps=1, search_steps=1)),
        ("deepfool", lambda x: deepfool.deepfool(model, x, steps=1, candidates=2)),
        ("eot", lambda x: eot.eot(model, x, steps=1, samples=1)),
        ("transform_success", lambda x: eot.transform_success(model, x, one, trials=1)),
        ("one_pixel", lambda x: evolution.one_pixel(model, x, popsize=4, generations=0)),
        ("fab", lambda x: fab.fab(model, x, steps=1)),
        ("fab_targeted", lambda x: fab.fab_targeted(model, x, steps=1, top=1)),
        ("rfgsm", lambda x: rfgsm.rfgsm(model, x)),
        ("jsma", lambda x: sparse.jsma(model, x, one, gamma=1e-3)),
        ("ead", lambda x: sparse.ead(model, x, steps=1, search_steps=1)),
        ("square", lambda x: square.square(model, x, queries=1)),
        ("transfer_fgsm", lambda x: transferable.transfer_fgsm(model, x, steps=1)),
        (
            "substitute_attack x",
            lambda x: substitute.substitute_attack(model, torch.rand(2, 3, 32, 32), x, rounds=0, epochs=1),
        ),
        (
            "substitute_attack seed",
            lambda x: substitute.substitute_attack(model, x, torch.rand(1, 3, 32, 32), rounds=0, epochs=1),
        ),
        ("adversarial_patch", lambda x: patch.adversarial_patch(model, x, 340, size=8, steps=1)),
        ("patch_success", lambda x: patch.patch_success(model, x, torch.rand(3, 8, 8), 340)),
        ("evaluate_defense", lambda x: evaluate_defense(model, "jpeg", x, one, steps=1, eot_samples=1)),
        ("DefendedModel", lambda x: DefendedModel(model, DEFENSES.get("jpeg")())(x)),
        ("causal_curve", lambda x: causal_curve(model, x, heat, steps=2)),
        ("deletion", lambda x: deletion(model, x, heat, steps=2)),
        ("insertion", lambda x: insertion(model, x, heat, steps=2)),
        ("project_units", lambda x: project_units(model, x, "blocks.3", [0], [(0, 0)])),
        ("evaluate", lambda x: evaluate(model, channel("blocks.2", 0), x)),
        ("representation", lambda x: representation(model, x, "blocks.2")),
        ("robust_scores", lambda x: robust_scores(model, channel("blocks.2", 0), x, views=1)),
    ]

    def defense(factory):
        return lambda x: factory().wrap(model)(x)

    def method(function, options):
        return lambda x: function(model, x, **options)

    calls += [(f"defense {name}", defense(DEFENSES.get(name))) for name in DEFENSES.names()]
    cam_layer = {"cam": {"layer": "bn2"}}  # CAM needs the GAP + Linear head's input
    calls += [
        (f"attribution {e.name}", method(e.function, {**quick_options(e.name), **cam_layer.get(e.name, {})}))
        for e in METHODS.entries()
    ]
    return calls


LOW_LEVEL_NAMES = [name for name, _ in _low_level(None)]
LOW_BAD = {
    "empty batch": torch.rand(0, 3, 32, 32),
    "NaN": torch.full((1, 3, 32, 32), float("nan")),
    "grey": torch.rand(1, 1, 32, 32),
    "uint8": torch.randint(0, 255, (1, 3, 32, 32), dtype=torch.uint8),
}


@pytest.mark.parametrize("name", LOW_LEVEL_NAMES)
def test_every_lower_level_function_checks_its_images(model, name):
    """A batch of 0, NaN, one grey channel or uint8 is one ConvscopeError (never a RuntimeError from
    deep inside); float64 runs, converted to the model's float32."""
    call = dict(_low_level(model))[name]
    for case, x in LOW_BAD.items():
        with pytest.raises(ConvscopeError):
            call(x)
            pytest.fail(f"{name} accepted a bad tensor ({case})")
    call(torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0), dtype=torch.float64))


def test_save_image_refuses_what_it_cannot_draw(tmp_path):
    """NaN, uint8 (0-255 read as [0, 1]) or an empty batch used to be written as a black or white
    picture; one (3, H, W) image and one grey channel are still fine."""
    for bad in (LOW_BAD["NaN"], LOW_BAD["uint8"], LOW_BAD["empty batch"], torch.full((3, 8, 8), 2.0)):
        with pytest.raises(ConvscopeError):
            convscope.save_image(bad, tmp_path / "x.png")
    assert convscope.save_image(torch.rand(3, 8, 8), tmp_path / "a.png").is_file()
    assert convscope.save_image(torch.rand(1, 1, 8, 8), tmp_path / "b.png").is_file()
