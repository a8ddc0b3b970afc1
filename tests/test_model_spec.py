"""One model spec on every command: the shared model options, fixed-size models, labels files,
self-describing checkpoints, TorchScript without hooks, and the done-when matrix of issue 15.

The matrix runs every command that takes a model (``COMMANDS_WITH_A_MODEL``, checked against
``convscope.cli.all_commands()``) on (a) the embedded model, (b) a torchvision resnet18 from a state
dict (random init saved to tmp), (c) a user builder with a --labels file, (d) a 32x32 CIFAR-style net
(flatten + linear: only takes 32x32), (e) the checkpoints `convscope train` and `convscope finetune`
write; each command must write its output or fail with one clear line (exit 2, no traceback). The
options are the smallest that still run the real code (one step, two images, 32 px): the matrix
checks that every path takes every model, each method's own tests check its numbers. The embedded
model runs with ``--input-size 64`` (the real network, images resized to 64 inside ``forward``) so
that its row costs what the others do.
"""

import json
import sys
import textwrap

import pytest
import torch

from convscope.errors import ConvscopeError
from convscope.models import ModelSpec, load_model, parse_labels, parse_size, save_checkpoint
from helpers import run_cli

USER_NETS = '''
from torch import nn


def cifar_net(num_classes: int = 10):
    """CIFAR-style: two conv stages, then flatten + linear on the 8x8 map (only takes 32x32)."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(16 * 8 * 8, num_classes))


def pooled_net(num_classes: int = 3):
    """Any size: conv, global average pooling, linear."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes))
'''


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """The user's files: a builder module, a labels file, state dicts, folders of photos, and the
    checkpoints of `convscope train` and of `convscope finetune` (on the train checkpoint)."""
    import torchvision

    from convscope.images import load_image, save_image

    root = tmp_path_factory.mktemp("zoo")
    (root / "usernets_spec.py").write_text(textwrap.dedent(USER_NETS))
    sys.path.insert(0, str(root))
    import usernets_spec

    torch.manual_seed(0)
    torch.save(usernets_spec.cifar_net().state_dict(), root / "cifar.pt")
    torch.save(torchvision.models.resnet18().state_dict(), root / "resnet18.pt")
    (root / "labels.txt").write_text("cat\ndog\nbird\n")
    for name in ("chelsea", "coffee", "astronaut"):
        save_image(load_image(f"sample:{name}", 48), root / "photos" / f"{name}.png")
    for cls, names in (("cats", ("chelsea", "astronaut")), ("cups", ("coffee", "rocket"))):
        for name in names:
            for flip in (False, True):
                image = load_image(f"sample:{name}", 40)
                save_image(image.flip(-1) if flip else image, root / "photos_classes" / cls / f"{name}{int(flip)}.png")
    # (e): a checkpoint written by `convscope train` (small_cnn, 16x16 digits), then one by `finetune` on it
    train = ["train", "digits", "--epochs", "1", "--eval-size", "16", "--eps", "8/255", "-o", str(root / "training")]
    train += ["--eval", "pgd"]  # the final evaluation's default, AutoAttack, is not what this fixture is about
    assert _cli(*train) == 0
    finetune = ["finetune", str(root / "photos_classes"), "--epochs", "1", "--size", "32", "--device", "cpu"]
    assert _cli(*finetune, "-m", str(root / "training" / "standard.safetensors"), "-o", str(root / "finetuned")) == 0
    yield root
    sys.path.remove(str(root))
    sys.modules.pop("usernets_spec", None)


def _cli(*args: str) -> int:
    """``convscope ARGS`` in-process outside a test function (module fixtures have no monkeypatch)."""
    from convscope.cli import main

    argv = sys.argv
    sys.argv = ["convscope", *args]
    try:
        main()
    except SystemExit as done:
        return done.code or 0
    finally:
        sys.argv = argv
    return 0


MODELS = {
    "embedded": ["-m", "efficientnet_lite0", "--input-size", "64"],
    "resnet18": ["-m", "torchvision:resnet18", "--weights", "{zoo}/resnet18.pt", "--input-size", "32"],
    "builder+labels": ["-m", "usernets_spec:pooled_net", "--labels", "{zoo}/labels.txt", "--input-size", "40"],
    "cifar32": ["-m", "usernets_spec:cifar_net", "--weights", "{zoo}/cifar.pt", "--input-size", "32"],
    "train-checkpoint": ["-m", "{zoo}/training/standard.safetensors"],
    "finetune-checkpoint": ["-m", "{zoo}/finetuned/features.safetensors"],
}
#: a convolution and a deeper layer of each model
LAYERS = {
    "embedded": ("conv_stem", "blocks.3"),
    "resnet18": ("conv1", "layer2"),
    "builder+labels": ("0", "2"),
    "cifar32": ("0", "4"),
    "train-checkpoint": ("0", "3"),
    "finetune-checkpoint": ("0", "3"),
}
SEGMENT_BACKBONES = {
    "embedded": "efficientnet_lite0",
    "train-checkpoint": "{zoo}/training/standard.safetensors",
    "finetune-checkpoint": "{zoo}/finetuned/features.safetensors",
}
NOT_IMAGENET = ("builder+labels", "cifar32", "train-checkpoint", "finetune-checkpoint")
#: commands that may answer one clear line instead of an output on a model (and why)
CLEAR_LINE = {
    ("heatmap", "builder+labels"): "convolutionalize",  # a plain Sequential head: no known FC layout
    ("heatmap", "cifar32"): "convolutionalize",
    ("heatmap", "train-checkpoint"): "convolutionalize",
    ("heatmap", "finetune-checkpoint"): "convolutionalize",
    ("robustness", "train-checkpoint"): "at least 32x32",  # ImageNet-C corruptions are defined from 32 px up
    ("robustness", "finetune-checkpoint"): "at least 32x32",
    **{("shape-bias", source): "ImageNet's 1000 classes" for source in NOT_IMAGENET},  # 16 sets of ImageNet classes
}
#: the embedded model's full tour and report: what `make demo` runs, each step and section with its own
#: test (tests/test_report.py, the tour steps' tests). Of the user models, the tour runs on a torchvision
#: state dict and on the fixed-size builder, the report on the builder with a labels file and on a `train`
#: checkpoint: the other rows take the same paths (builder, checkpoint) through both, and the pair costs
#: ~35 s of CPU per row (resnet18: tour 24 s + report 11 s at 1 thread, fresh processes, 2026-12-02).
COVERED_ELSEWHERE = {("tour", "embedded"), ("report", "embedded")}
COVERED_ELSEWHERE |= {("tour", source) for source in ("builder+labels", "train-checkpoint", "finetune-checkpoint")}
COVERED_ELSEWHERE |= {("report", source) for source in ("resnet18", "cifar32", "finetune-checkpoint")}
#: every command that takes a model: the matrix runs each (a test keeps this equal to the CLI's commands
#: that have the shared model options; ``segment train`` takes its FCN backbone through them too)
COMMANDS_WITH_A_MODEL = (
    "layers predict tour attack attack-eval fooling patch weights examples atlas evaluate-explanations explain "
    "sanity report robustness defenses shape-bias heatmap serve visualize dream invert stylize finetune"
).split() + ["segment train"]


#: the tour steps whose layers were EfficientNet names before they were chosen by depth
LAYER_STEPS = ("first-layer filters", "feature visualization, DeepDream")


def _commands(conv: str, deep: str, out) -> dict[str, list[str]]:
    img = "sample:chelsea"
    return {
        "predict": ["predict", img, "-k", "2"],
        "layers": ["layers", "--match", deep],
        "weights": ["weights", "-l", conv, "-o", f"{out}/weights.png"],
        "explain": ["explain", img, "--method", "gradcam", "--layer", deep, "-o", f"{out}/explain.png"],
        "explain-ig": ["explain", img, "--method", "integrated_gradients", "--steps", "2", "-o", f"{out}/ig.png"],
        "sanity": ["sanity", img, "--methods", "saliency", "-o", f"{out}/sanity.png"],
        "attack": ["attack", img, "--method", "pgd", "--set", "steps=2", "--eps", "4/255", "-o", f"{out}/attack.png"],
        "attack-eval": ["attack-eval", "{zoo}/photos", "--method", "fgsm"],
        "fooling": ["fooling", "1", "--generations", "2", "--popsize", "4", "--size", "32", "-o", f"{out}/fooling.png"],
        "patch": ["patch", "--target", "1", "--steps", "1", "--size", "32", "--patch-size", "8", "-o", f"{out}/p.png"],
        "visualize": ["visualize", "-l", deep, "-c", "0", "--steps", "2", "-q", "-o", f"{out}/visualize.png"],
        "visualize-class": ["visualize", "--class", "1", "--steps", "2", "-q", "-o", f"{out}/class.png"],
        "dream": ["dream", img, "-l", deep, "--steps", "1", "--octaves", "2", "-q", "-o", f"{out}/dream.png"],
        "invert": ["invert", img, "-l", deep, "--steps", "1", "--size", "32", "-q", "-o", f"{out}/invert.png"],
        "stylize": [
            "stylize",
            img,
            "sample:brick",
            "--content-layer",
            deep,
            "--style-layers",
            f"{conv},{deep}",
            "--steps",
            "1",
            "--size",
            "32",
            "-q",
            "-o",
            f"{out}/stylize.png",
        ],
        "stylize-default-layers": [
            "stylize",
            img,
            "sample:brick",
            "--steps",
            "1",
            "--size",
            "32",
            "-q",
            "-o",
            f"{out}/s2.png",
        ],
        "heatmap": ["heatmap", img, "--class", "1", "--size", "96", "-o", f"{out}/heatmap.png"],
        "examples": ["examples", "-l", deep, "{zoo}/photos", "--k", "2", "--channels", "0-1", "-o", f"{out}/examples"],
        "atlas": [
            "atlas",
            "{zoo}/photos",
            "-l",
            deep,
            "-k",
            "2",
            "--channels",
            "0-1",
            "--size",
            "32",
            "-o",
            f"{out}/atlas",
        ],
        "evaluate-explanations": [
            "evaluate-explanations",
            "{zoo}/photos",
            "--methods",
            "saliency",
            "--metrics",
            "sparseness",
            "--limit",
            "2",
            "-o",
            f"{out}/metrics.csv",
        ],
        "report": ["report", img, "-o", f"{out}/report.html"],
        "robustness": [
            "robustness",
            "samples",
            "--corruptions",
            "fog",
            "--severities",
            "1",
            "--limit",
            "2",
            "-o",
            f"{out}/robustness",
        ],
        "defenses": ["defenses", "{zoo}/photos", "--defenses", "jpeg", "--steps", "1", "--eot", "1", "--limit", "2"],
        "shape-bias": ["shape-bias", "--size", "32", "--steps", "1", "-o", f"{out}/shape_bias"],
        "tour": ["tour", "-o", f"{out}/tour"],
        "finetune": ["finetune", "{zoo}/photos_classes", "--epochs", "1", "--size", "32", "-o", f"{out}/finetune"],
    }


def test_the_matrix_has_every_command_that_takes_a_model():
    from convscope.cli import all_commands

    with_options = sorted(
        path
        for path, command in all_commands().items()
        if {"--model", "--weights"} <= {option for p in command.params for option in getattr(p, "opts", ())}
    )
    assert with_options == sorted(COMMANDS_WITH_A_MODEL)
    ran = {args[0] for args in _commands("a", "b", "out").values()} | {"serve", "segment train"}
    assert ran == set(COMMANDS_WITH_A_MODEL)


@pytest.mark.parametrize("source", list(MODELS))
def test_every_command_takes_every_model(monkeypatch, capsys, tmp_path, zoo, source):
    conv, deep = LAYERS[source]
    model = [arg.format(zoo=zoo) for arg in MODELS[source]] + ["--device", "cpu"]
    failures = []
    for name, args in _commands(conv, deep, tmp_path).items():
        if (name, source) in COVERED_ELSEWHERE:
            continue
        args = [arg.format(zoo=zoo) for arg in args]
        code, out, err = run_cli(monkeypatch, capsys, *args, *model)
        expected = CLEAR_LINE.get((name, source))
        if expected is not None:
            errors = [line for line in err.splitlines() if not line.startswith("warning:")]
            if not (code == 2 and expected in err and len(errors) == 1 and "Traceback" not in err):
                failures.append(f"{name}: expected one line about {expected!r}, got {code}: {err.strip()[-300:]}")
        elif code != 0 or "Traceback" in err:
            failures.append(f"{name}: exit {code}: {(err or out).strip()[-300:]}")
        elif name == "tour":  # the layers of every step are chosen from the model: none is skipped for a name
            flat = " ".join(out.split())
            missing = [step for step in LAYER_STEPS if f"✓ {step}" not in flat]
            if missing or "unknown layer" in flat:
                failures.append(f"tour: {', '.join(missing) or 'a step'} did not run: {flat[-600:]}")
        elif name == "report" and "dreamed at" not in (tmp_path / "report.html").read_text():
            failures.append(f"report: no DeepDream section: {err.strip()[-300:]}")
    # serve: the web app is built on the model (uvicorn.run is replaced: no port is opened)
    import uvicorn

    served = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **settings: served.append(app))
    code, _, err = run_cli(monkeypatch, capsys, "serve", *model)
    if code != 0 or len(served) != 1:
        failures.append(f"serve: exit {code}: {err.strip()[-300:]}")
    # segment train takes its FCN backbone through the model options: the embedded model and the checkpoints
    if source in SEGMENT_BACKBONES:
        code, _, err = run_cli(
            monkeypatch,
            capsys,
            *("segment", "train", "generated:scenes", "--head", "fcn32s", "--count", "8", "--size", "32"),
            *("--epochs", "1", "--batch-size", "4", "-o", str(tmp_path / "seg"), "--device", "cpu"),
            *("-m", SEGMENT_BACKBONES[source].format(zoo=zoo)),
        )
        errors = [line for line in err.splitlines() if not line.startswith("warning:")]
        if not (code == 0 or (code == 2 and len(errors) == 1)) or "Traceback" in err:
            failures.append(f"segment train: exit {code}: {err.strip()[-300:]}")
    assert not failures, "\n".join(failures)
    assert (tmp_path / "finetune" / "features.safetensors").is_file()


def test_finetune_checkpoint_is_self_describing(monkeypatch, capsys, zoo):
    # (e) with a finetune checkpoint: -m that.safetensors, no other flag (the builder is a known name)
    checkpoint = zoo / "finetuned" / "features.safetensors"
    meta = json.loads(checkpoint.with_suffix(".json").read_text())
    assert meta["arch"] == "small_cnn" and meta["labels"] == ["cats", "cups"] and meta["head"]["out_features"] == 2
    code, out, _ = run_cli(monkeypatch, capsys, "predict", "sample:coffee", "-k", "2", "-m", str(checkpoint))
    assert code == 0 and "cups" in out and "cats" in out


@pytest.mark.parametrize(
    "args", [["predict", "sample:chelsea"], ["layers", "--match", "bn2"], ["weights", "-o", "{tmp}/w.png"]]
)
def test_embedded_model_through_the_shared_options(monkeypatch, capsys, tmp_path, args):
    code, out, err = run_cli(
        monkeypatch, capsys, *[a.format(tmp=tmp_path) for a in args], "-m", "efficientnet_lite0", "--device", "cpu"
    )
    assert code == 0, err


def test_a_builder_named_in_a_checkpoint_is_only_imported_when_the_user_says_so(zoo, tmp_path):
    network = load_model("usernets_spec:pooled_net", labels=("a", "b", "c"), input_size=40)
    path = save_checkpoint(network, tmp_path / "pooled.safetensors")
    with pytest.raises(ConvscopeError, match="--trust"):
        load_model(path)
    for loaded in (load_model(path, trust=True), load_model(tmp_path / "pooled.json", arch="usernets_spec:pooled_net")):
        assert loaded.labels == ["a", "b", "c"] and loaded.input_size == 40 and loaded.fixed_size
        x = torch.rand(2, 3, 40, 40)
        assert torch.allclose(loaded(x), network(x))


def test_a_state_dict_that_does_not_fit_names_the_first_mismatch(zoo):
    with pytest.raises(ConvscopeError) as error:
        load_model("torchvision:resnet34", weights=zoo / "resnet18.pt")
    assert "does not fit" in str(error.value) and "layer1.2.conv1.weight" in str(error.value)
    with pytest.raises(ConvscopeError) as error:  # same keys, other shapes: not "internal error"
        load_model("usernets_spec:cifar_net", weights=zoo / "resnet18.pt")
    assert "does not fit" in str(error.value) and len(str(error.value).splitlines()) == 1
    bad = zoo / "wide.pt"
    torch.save(
        {
            k: torch.zeros(2, *v.shape[1:]) if v.ndim else v
            for k, v in __import__("usernets_spec").cifar_net().state_dict().items()
        },
        bad,
    )
    with pytest.raises(
        ConvscopeError, match=r"shape mismatch.*0\.weight: file \[2, 3, 3, 3\] vs architecture \[8, 3, 3, 3\]"
    ):
        load_model("usernets_spec:cifar_net", weights=bad)


def test_fixed_size_network_takes_any_size_through_the_wrapper(zoo):
    model = load_model("usernets_spec:cifar_net", weights=zoo / "cifar.pt", input_size="32")
    assert model.fixed_size and model.input_shape == (32, 32)
    large = torch.rand(1, 3, 96, 96)
    small = torch.nn.functional.interpolate(large, size=32, mode="bilinear", antialias=True, align_corners=False)
    assert torch.allclose(model(large), model.network(small), atol=1e-6)  # resized to 32 inside forward
    assert model(torch.rand(3, 3, 57, 41)).shape == (3, 10)
    with pytest.raises(RuntimeError, match="mat1 and mat2"):  # the bare network is what failed before
        model.network(torch.rand(1, 3, 64, 64))


def test_labels_files_sizes_and_spec(tmp_path):
    (tmp_path / "a.txt").write_text("cat\n\ndog\n")
    (tmp_path / "b.json").write_text('["cat", "dog"]')
    (tmp_path / "c.json").write_text('{"1": "dog", "0": "cat"}')
    (tmp_path / "d.json").write_text('{"dog": 1, "cat": 0}')
    for name in ("a.txt", "b.json", "c.json", "d.json"):
        assert parse_labels(tmp_path / name) == ("cat", "dog")
    (tmp_path / "gap.json").write_text('{"0": "cat", "2": "dog"}')
    with pytest.raises(ConvscopeError, match="without gaps"):
        parse_labels(tmp_path / "gap.json")
    assert parse_size("32") == 32 and parse_size("224x320") == (224, 320)
    with pytest.raises(ConvscopeError, match="H or HxW"):
        parse_size("big")
    model = (
        load_model(
            ModelSpec(
                "usernets_spec:pooled_net",
                labels=("a", "b", "c"),
                mean=(0.5,) * 3,
                std=(0.25,) * 3,
                preprocess="squash",
            )
        )
        if "usernets_spec" in sys.modules
        else None
    )
    if model is not None:
        assert model.labels == ["a", "b", "c"] and model.mean == (0.5,) * 3 and model.preprocess == "squash"
    with pytest.raises(ConvscopeError, match="3 labels given, but torchvision:resnet18 has 1000 outputs"):
        load_model("torchvision:resnet18", labels=("a", "b", "c"))


def test_center_crop_is_torchvisions_convention(model):
    from torchvision.transforms import v2

    from convscope.images import load_image, model_image

    raw = load_image("sample:chelsea", size=None)
    ours = model_image("sample:chelsea", model)
    theirs = v2.Compose([v2.Resize(256, antialias=True), v2.CenterCrop(224)])(raw)
    assert ours.shape == (1, 3, 224, 224)
    # same geometry; the resampling filters differ (scikit-image's Gaussian prefilter vs torchvision's
    # antialiased bilinear): mean absolute difference 0.011 on chelsea
    assert (ours - theirs).abs().mean() < 0.03


def test_torchscript_model_says_what_needs_hooks(model, tmp_path):
    from convscope import attribute

    network = torch.jit.trace(
        torch.nn.Sequential(
            torch.nn.Conv2d(3, 4, 3),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(),
            torch.nn.Linear(4, 3),
        ).eval(),
        torch.rand(1, 3, 32, 32),
    )
    path = tmp_path / "scripted.pt"
    network.save(str(path))
    scripted = load_model(path)
    x = torch.rand(1, 3, 32, 32)
    assert attribute(scripted, x, 0, method="saliency").shape[-2:] == (32, 32)
    with pytest.raises(ConvscopeError, match="TorchScript.*saliency"):
        attribute(scripted, x, 0, method="gradcam", layer="0")


def test_exported_program_needs_trust_and_says_what_needs_hooks(monkeypatch, capsys, tmp_path):
    from convscope import attack, attribute
    from convscope.attacks import ATTACKS

    torch.manual_seed(0)
    network = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 10),
    ).eval()
    path = tmp_path / "exported.pt2"
    torch.export.save(torch.export.export(network, (torch.rand(1, 3, 32, 32),)), str(path))
    # without --trust: one line, exit 2, and the archive is never opened by torch.export.load
    opened = []
    monkeypatch.setattr(torch.export, "load", lambda *a, **k: opened.append(a))
    code, _, err = run_cli(monkeypatch, capsys, "predict", "sample:chelsea", "-m", str(path), "--device", "cpu")
    assert code == 2 and "--trust" in err and len(err.strip().splitlines()) == 1 and not opened
    monkeypatch.undo()
    exported = load_model(path, trust=True)
    assert exported.fixed_size and exported.input_shape == (32, 32) and not exported.hookable
    x = torch.rand(3, 3, 32, 32)
    assert torch.allclose(exported(x), network(x), atol=1e-6)  # a batch of 3 through a program exported at 1
    few = {"integrated_gradients": {"steps": 8}, "smoothgrad": {"samples": 4}}
    for method in ("saliency", "input_x_gradient", "integrated_gradients", "smoothgrad", "occlusion"):
        assert attribute(exported, x, 0, method=method, **few.get(method, {})).shape[-2:] == (32, 32), method
    small = torch.rand(1, 3, 16, 16)  # resized to the program's 32x32 inside forward; JSMA's cost grows with pixels
    for method in ATTACKS.names():  # APGD-T and FAB-T need >= 4 classes: the net has 10
        result = attack(exported, small, method=method, seed=0, **ATTACKS.meta(method)["quick"])
        assert result.x_adv.shape == small.shape, method
    with pytest.raises(ConvscopeError, match="torch.export program.*saliency"):
        attribute(exported, x, 0, method="gradcam")
    with pytest.raises(ConvscopeError, match="torch.export program.*saliency"):
        attribute(exported, x, 0, method="gradcam", layer="0")
    code, _, err = run_cli(
        monkeypatch, capsys, "explain", "sample:chelsea", "--method", "gradcam", "-m", str(path), "--trust",
        "-o", str(tmp_path / "e.png"), "--device", "cpu",
    )  # fmt: skip
    assert code == 2 and "takes no hooks" in err and "integrated_gradients" in err
    assert len([line for line in err.strip().splitlines() if not line.startswith("warning:")]) == 1


def test_option_vocabulary(monkeypatch, capsys, tmp_path):
    code, _, err = run_cli(
        monkeypatch,
        capsys,
        "attack",
        "sample:chelsea",
        "--set",
        "stepz=2",
        "--size",
        "64",
        "-o",
        str(tmp_path / "a.png"),
        "--device",
        "cpu",
    )
    assert code == 2 and "did you mean steps" in err
    code, _, err = run_cli(monkeypatch, capsys, "train", "digits", "--eps", "eight")
    assert code == 2 and "8/255" in err


def test_help_does_not_import_torch():
    import subprocess

    code = (
        "import sys; from convscope.cli import main; sys.argv = ['convscope', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "NO-TORCH" in result.stdout and "finetune" in result.stdout, result.stdout[-500:] + result.stderr[-500:]


def test_the_command_table_is_what_the_modules_register():
    import pkgutil

    import convscope.commands
    from convscope.cli import COMMANDS, feature_commands

    registered = {}
    for module in pkgutil.iter_modules(convscope.commands.__path__):
        for name, command in feature_commands(module.name).items():
            registered[name] = (module.name, command.get_short_help_str(limit=300))
    # a new command or a new first docstring line: update COMMANDS in convscope/cli.py (--help reads it)
    assert registered == COMMANDS, {k: v for k, v in registered.items() if COMMANDS.get(k) != v}
