"""The one-file HTML report: everything convscope can show about one model and one photo.

:func:`build_report` runs each registered report section on the model and image and
returns a :class:`Report`; :meth:`Report.html` renders it through the jinja2 template
``templates/report.html.j2`` into a single self-contained HTML file (pictures embedded as
base64 PNG ``data:`` URIs, CSS inline, no script, nothing fetched) that can be opened
offline or mailed.

A section is a function ``section(model, image, context) -> Section | None`` registered in
:data:`REPORT_SECTIONS` next to its feature; it returns ``None`` when it has nothing to show
for this model and image, and may read what earlier sections
left in ``context`` (e.g. the predicted class). A section that raises is not hidden: the
report shows its error in place and :func:`build_report` emits a warning.
"""

from __future__ import annotations

__all__ = [
    "ATTACK_EPS",
    "attack_pictures",
    "attack_section",
    "attribution_section",
    "build_report",
    "class_visualization_section",
    "dream_section",
    "Figure",
    "layers_section",
    "picture_of",
    "prediction_chart",
    "prediction_section",
    "Report",
    "REPORT_SECTIONS",
    "sanity_section",
    "Section",
    "SectionFn",
    "write_report",
]

import base64
import datetime
import html
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from PIL import Image

from .checks import check_images
from .errors import ConvscopeError
from .images import to_uint8
from .layers import LAYER_COLUMNS, layer_table
from .predictions import Prediction, predict
from .progress import progress_bar
from .registry import Registry
from .render import bar_chart, overlay, png_bytes
from .targets import class_name

ATTACK_EPS = 2 / 255
DREAM_LAYER, DREAM_OCTAVES, DREAM_STEPS = "blocks.4", 2, 8
CLASS_VIS_SIZE, CLASS_VIS_STEPS = 112, 32


@dataclass
class Figure:
    """One picture of a section: a PIL image and its caption."""

    picture: Image.Image
    caption: str = ""

    @property
    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(png_bytes(self.picture)).decode("ascii")


@dataclass
class Section:
    """One block of the report: pictures side by side, an optional table and a note."""

    title: str
    figures: list[Figure] = field(default_factory=list)
    headers: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    note: str = ""
    collapsed_table: bool = False
    seconds: float = 0.0
    error: str | None = None


@dataclass
class Report:
    """A built report: render with :meth:`html`, write with :meth:`save`."""

    title: str
    model_name: str
    image_name: str
    sections: list[Section]
    seconds: float
    created: str

    def html(self) -> str:
        """The whole report as one self-contained HTML document."""
        import jinja2

        environment = jinja2.Environment(
            loader=jinja2.PackageLoader("convscope", "templates"), autoescape=jinja2.select_autoescape(["html", "j2"])
        )
        return environment.get_template("report.html.j2").render(report=self)

    def save(self, path: str | Path) -> Path:
        """Write the HTML file (creating its folder) and return its path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.html(), encoding="utf-8")
        return path

    def _repr_html_(self) -> str:  # notebooks: show the report inline
        return f'<iframe srcdoc="{html.escape(self.html())}" style="width:100%;height:800px;border:0"></iframe>'


SectionFn = Callable[[torch.nn.Module, torch.Tensor, dict], "Section | None"]
#: The report's sections, in order of registration (the report shows them in this order).
REPORT_SECTIONS: Registry[SectionFn] = Registry("report section")


def build_report(
    model: torch.nn.Module,
    image: torch.Tensor,
    image_name: str = "image",
    sections: list[str] | None = None,
    progress: bool = False,
    on_section: Callable[[str, int, int], None] | None = None,
) -> Report:
    """Run the report sections on one image.

    Args:
        model: a classifier taking RGB in [0, 1] (e.g. from :func:`convscope.load_model`).
        image: (1, 3, H, W) in [0, 1], on the model's device.
        image_name: shown in the title (e.g. ``sample:chelsea`` or the file name).
        sections: names from :data:`REPORT_SECTIONS` to run (default: all).
        progress: show a rich progress bar over the sections.
        on_section: called as ``on_section(name, done, total)`` before each section (the web
            app's job progress; raising from it stops the report).

    Returns:
        The :class:`Report`; sections whose feature is not installed are left out.

    >>> report = build_report(load_model(), load_image("sample:chelsea"), "sample:chelsea")
    >>> report.save("report.html")
    """
    image = check_images(image)
    if image.shape[0] != 1:
        raise ConvscopeError(f"the report explains one image; got a batch of {image.shape[0]}")
    names = REPORT_SECTIONS.names() if sections is None else list(sections)
    for name in names:
        REPORT_SECTIONS.get(name)  # unknown names fail before any work
    context: dict[str, Any] = {}
    built: list[Section] = []
    start = time.perf_counter()
    with progress_bar(len(names), "report", progress, interrupted=None) as advance:
        for done, name in enumerate(names):
            if on_section is not None:
                on_section(name, done, len(names))
            section_start = time.perf_counter()
            try:
                section = REPORT_SECTIONS.get(name)(model, image, context)
            except KeyboardInterrupt:
                raise
            except Exception as error:  # shown in the report, not swallowed
                message = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
                warnings.warn(f"report section {name!r} failed: {message}", stacklevel=2)
                section = Section(title=name, error=message)
            if section is not None:
                section.seconds = time.perf_counter() - section_start
                built.append(section)
            advance(1, name)
    seconds = time.perf_counter() - start
    built.append(
        Section(
            "Timings",
            headers=["section", "seconds"],
            rows=[[s.title, f"{s.seconds:.2f}"] for s in built] + [["total", f"{seconds:.2f}"]],
            note=f"wall-clock seconds on {image.device} with {torch.get_num_threads()} threads",
        )
    )
    return Report(
        title=f"convscope report: {image_name}",
        model_name=getattr(model, "name", type(model).__name__),
        image_name=image_name,
        sections=built,
        seconds=seconds,
        created=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    )


def write_report(
    model: torch.nn.Module, image: torch.Tensor, path: str | Path, image_name: str = "image", progress: bool = False
) -> Path:
    """Build the report for ``image`` and write it to ``path`` (one HTML file)."""
    return build_report(model, image, image_name, progress=progress).save(path)


def picture_of(image: torch.Tensor) -> Image.Image:
    """(1, 3, H, W) or (3, H, W) in [0, 1] -> PIL image."""
    return Image.fromarray(to_uint8(image.detach().cpu()))


def prediction_chart(ranked: list[Prediction], title: str = "") -> Image.Image:
    """Top-k bar chart of one image's predictions."""
    return bar_chart([f"{p.label} ({p.class_id})" for p in ranked], [p.probability for p in ranked], title=title)


@REPORT_SECTIONS.register("prediction")
def prediction_section(model, image, context) -> Section:
    """The input and its top-5 classes."""
    ranked = predict(model, image, 5)[0]
    context["predictions"] = ranked
    context["target"] = ranked[0].class_id
    return Section(
        "Prediction",
        figures=[
            Figure(picture_of(image), f"input ({image.shape[-1]}x{image.shape[-2]})"),
            Figure(prediction_chart(ranked, "top-5"), "softmax probabilities"),
        ],
        headers=["rank", "class id", "label", "probability"],
        rows=[[str(i + 1), str(p.class_id), p.label, f"{p.probability:.4f}"] for i, p in enumerate(ranked)],
    )


@REPORT_SECTIONS.register("layers")
def layers_section(model, image, context) -> Section:
    """Every layer with its output shape and receptive field (size, jump, start)."""
    rows = [row.cells() for row in layer_table(model, tuple(image.shape[-2:]))]
    return Section(
        "Layers and receptive fields",
        headers=list(LAYER_COLUMNS),
        rows=rows,
        collapsed_table=True,
        note=f"{len(rows)} layers; receptive fields in input pixels at {image.shape[-2]}x{image.shape[-1]}",
    )


@REPORT_SECTIONS.register("attribution")
def attribution_section(model, image, context) -> Section | None:
    """Every registered attribution method for the top class, side by side."""
    from .attribution import METHODS, attribute, display_mode, quick_options

    target = context.get("target")
    label = class_name(getattr(model, "labels", None), target)
    figures, rows = [], []
    for method in METHODS.names():
        start = time.perf_counter()
        options = quick_options(method)  # the registry's smaller settings (under a minute on two cores)
        heat = attribute(model, image, target, method=method, **options)
        seconds = time.perf_counter() - start
        figures.append(Figure(overlay(image[0], heat[0], mode=display_mode(method)), f"{method} ({seconds:.2f} s)"))
        rows.append([method, ", ".join(f"{k}={v}" for k, v in options.items()) or "defaults", f"{seconds:.2f}"])
    return Section(
        f"Attribution maps for “{label}” ({target})",
        figures=figures,
        headers=["method", "options", "seconds"],
        rows=rows,
        note="CAM maps scaled min-max (jet); gradient maps by |value| / 99.5th percentile, coloured only where strong; "
        "occlusion signed on a diverging map (red: hiding the patch lowers the score, blue: raises it)",
    )


@REPORT_SECTIONS.register("sanity")
def sanity_section(model, image, context) -> Section | None:
    """Adebayo et al. (2018) cascading randomization for saliency and Grad-CAM."""
    from .attribution.sanity import sanity_check, sanity_figure

    result = sanity_check(model, image, context.get("target"), methods=("saliency", "gradcam"), progress=False)
    rows = [[method, step, f"{rho:.3f}", f"{ssim:.3f}"] for method, step, rho, ssim in result.rows()]
    return Section(
        "Sanity check (model-parameter randomization)",
        figures=[Figure(sanity_figure(result, image), "maps as layers are re-initialised from the top (cascading)")],
        headers=["method", "randomized down to", "Spearman vs trained", "SSIM vs trained"],
        rows=rows,
        collapsed_table=True,
        note="a method that explains the model changes its map as the weights are randomized",
    )


def attack_pictures(result, eps: float | None = None) -> list[Image.Image]:
    """Original | perturbation | adversarial pictures of the first image of an attack result.

    The perturbation is drawn by :func:`convscope.attacks.figure.perturbation_picture` (grey =
    unchanged; for L∞ attacks the full budget maps to black/white, the way Goodfellow et al.
    (2015) draw it amplified), the same as the CLI's figure. ``eps`` is unused (kept for callers).
    """
    from .attacks.figure import perturbation_picture

    shown, _ = perturbation_picture(result, 0)
    return [picture_of(result.x[0]), picture_of(shown), picture_of(result.x_adv[0])]


@REPORT_SECTIONS.register("attack")
def attack_section(model, image, context) -> Section | None:
    """An FGSM adversarial example (Goodfellow et al. 2015) at eps = 2/255."""
    from .attacks import attack

    result = attack(model, image, method="fgsm", eps=ATTACK_EPS, seed=0)
    row = result.rows()[0]
    original, perturbation, adversarial = attack_pictures(result, ATTACK_EPS)
    return Section(
        "Adversarial example (FGSM)",
        figures=[
            Figure(original, f"original: {row['original']} ({row['original_confidence']:.1%})"),
            Figure(perturbation, f"perturbation, eps = 2/255 (L∞ {row['linf'] * 255:.1f}/255), amplified"),
            Figure(
                adversarial,
                f"adversarial: {row['adversarial']} ({row['confidence']:.1%})"
                + ("" if row["success"] else " (attack failed)"),
            ),
        ],
        note="one signed-gradient step: x + eps·sign(∇x loss), clipped to [0, 1] (torchattacks' FGSM convention)",
    )


@REPORT_SECTIONS.register("dream")
def dream_section(model, image, context) -> Section | None:
    """DeepDream (Mordvintsev et al. 2015) on the input."""
    from .optimize import dream

    result = dream(model, image, DREAM_LAYER, octaves=DREAM_OCTAVES, steps=DREAM_STEPS, progress=False)
    return Section(
        "DeepDream",
        figures=[Figure(picture_of(image), "input"), Figure(picture_of(result.image), f"dreamed at {DREAM_LAYER}")],
        note=f"{DREAM_OCTAVES} octaves x {DREAM_STEPS} steps of normalized gradient ascent on the layer's energy",
    )


@REPORT_SECTIONS.register("class_visualization")
def class_visualization_section(model, image, context) -> Section | None:
    """A class visualization (Simonyan et al. 2014; Olah et al. 2017 parameterization) of the top class."""
    from .optimize import visualize_class

    target = context.get("target", 0)
    result = visualize_class(model, target, size=CLASS_VIS_SIZE, steps=CLASS_VIS_STEPS, progress=False)
    label = class_name(getattr(model, "labels", None), target)
    return Section(
        "Class visualization",
        figures=[Figure(picture_of(result.image[0]), f"“{label}”: logit {float(result.scores[0]):.1f}")],
        note=f"{CLASS_VIS_STEPS} Adam steps at {CLASS_VIS_SIZE} px, decorrelated Fourier parameterization with jitter/scale/rotate",
    )
