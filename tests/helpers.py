"""Helpers of the test-suite (and the benchmarks): run the CLI in-process, import the reference
``imagecorruptions`` on today's numpy/scikit-image/setuptools. Not part of the package."""


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run ``convscope ARGS`` in-process (pytest's ``monkeypatch`` and ``capsys``): (exit code, stdout, stderr)."""
    import sys

    from convscope.cli import main

    monkeypatch.setattr(sys, "argv", ["convscope", *args])
    code = 0
    try:
        main()
    except SystemExit as exit_:
        code = exit_.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_torchrun(*args: str, ports=(29731, 29732), timeout: float = 300):
    """``torchrun --nproc_per_node=2 ARGS`` (a script, or ``-m convscope ...``) with one thread per rank;
    the finished process. One retry, on a fresh port, only when a rank was killed by SIGABRT (a gloo
    teardown race seen once in CI, not reproduced in 14 runs)."""
    import os
    import subprocess
    import sys

    environment = dict(os.environ, OMP_NUM_THREADS="1")
    for port in ports:
        run = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}", *args],
            capture_output=True,
            text=True,
            env=environment,
            timeout=timeout,
        )
        if run.returncode == 0 or "SIGABRT" not in run.stderr:
            break
    return run


def load_imagecorruptions():
    """The reference package ``imagecorruptions`` (test/benchmark only), made importable on
    today's numpy, scikit-image and setuptools: it needs ``pkg_resources.resource_filename``,
    ``np.float_`` and scikit-image's removed ``multichannel`` argument. Patches the process."""
    import importlib
    import os
    import sys
    import types

    import numpy as np
    from skimage.filters import gaussian

    if "pkg_resources" not in sys.modules:
        shim = types.ModuleType("pkg_resources")
        shim.resource_filename = lambda package, path: os.path.join(
            os.path.dirname(sys.modules[package].__file__), path
        )
        sys.modules["pkg_resources"] = shim
    if not hasattr(np, "float_"):
        np.float_ = np.float64
    module = importlib.import_module("imagecorruptions")

    def gaussian_compat(image, sigma, multichannel=None, **kwargs):
        if multichannel:
            kwargs["channel_axis"] = -1
        return gaussian(image, sigma=sigma, **kwargs)

    module.corruptions.gaussian = gaussian_compat
    return module


def relu_twin(model):
    """A deep copy in eval mode with every ReLU6 replaced by nn.ReLU(inplace=True): what captum's rules cover."""
    import copy

    from torch import nn

    twin = copy.deepcopy(model).eval()
    for module in list(twin.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.ReLU6):
                setattr(module, name, nn.ReLU(inplace=True))
    return twin


def close_to(ours, theirs, rtol=1e-4) -> bool:
    """``ours`` equals a reference's array up to ``rtol`` of its largest magnitude."""
    import torch

    theirs = torch.as_tensor(theirs, dtype=ours.dtype)
    return torch.allclose(ours, theirs, rtol=rtol, atol=rtol * theirs.abs().max().item())


def svg_text(path) -> str:
    """All the text of an SVG figure written by convscope (its text stays text), lines joined by spaces."""
    import xml.etree.ElementTree as ElementTree

    root = ElementTree.parse(path).getroot()
    found = [" ".join(element.itertext()) for element in root.iter("{http://www.w3.org/2000/svg}text")]
    return " ".join(" ".join(found).split())


def png_dpi(path) -> tuple[float, float]:
    """The resolution a PNG records (pHYs), rounded: (300, 300) for convscope's figures."""
    from PIL import Image

    with Image.open(path) as picture:
        return tuple(round(v) for v in picture.info.get("dpi", (0, 0)))


def png_title(path) -> str:
    """The title a convscope PNG figure records in its metadata (the figure's suptitle or axes title)."""
    from PIL import Image

    with Image.open(path) as picture:
        return picture.text.get("Title", "")
