"""The one-file HTML report: everything convscope can show about one model and one photo.

:func:`build_report` runs each registered report section on the model and image and
returns a :class:`Report`; :meth:`Report.html` renders it through the jinja2 template
``templates/report.html.j2`` into a single self-contained HTML file (pictures embedded as
base64 PNG ``data:`` URIs, CSS inline, no script, nothing fetched) that can be opened
offline or mailed.

A section is a function ``section(model, image, context) -> Section | None`` registered in
:data:`~convscope.sections.REPORT_SECTIONS` next to its feature (a package's
``report_sections.py``: attribution, attacks, optimize; the prediction and the layer table are
here), ordered by its ``order``; it returns ``None`` when it has nothing to show
for this model and image, and may read what earlier sections
left in ``context`` (e.g. the predicted class). A section that raises is not hidden: the
report shows its error in place and :func:`build_report` emits a warning.
"""

from __future__ import annotations

__all__ = [
    "Figure",
    "REPORT_SECTIONS",
    "Report",
    "Section",
    "build_report",
    "layers_section",
    "picture_of",
    "prediction_chart",
    "prediction_section",
    "write_report",
]

import datetime
import html
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from PIL import Image

from .checks import check_images
from .errors import ConvscopeError
from .layers import LAYER_COLUMNS, layer_table
from .predictions import Prediction, predict
from .progress import progress_bar
from .render import PRINT_DPI, bar_chart
from .sections import REPORT_SECTIONS, Figure, Section, picture_of, report_section


@dataclass
class Report:
    """A built report: render with :meth:`html`, write with :meth:`save`."""

    title: str
    model_name: str
    image_name: str
    sections: list[Section]
    seconds: float
    created: str
    #: the model's top class for the image ("tiger cat (282), p = 0.390"), for the header
    prediction: str = ""

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
    _import_sections()
    names = _all_sections() if sections is None else list(sections)
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
    model_name = getattr(model, "name", type(model).__name__)
    top = context.get("predictions")
    return Report(
        title=f"convscope report: {model_name} on {image_name}",
        model_name=model_name,
        image_name=image_name,
        sections=built,
        seconds=seconds,
        created=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        prediction=f"{top[0].label} ({top[0].class_id}), p = {top[0].probability:.3f}" if top else "",
    )


def _all_sections() -> list[str]:
    """Every section, by ``order``."""
    _import_sections()
    return sorted(REPORT_SECTIONS.names(), key=lambda name: REPORT_SECTIONS.meta(name)["order"])


def _import_sections() -> None:
    """Import the ``report_sections`` module of each package of convscope that has one (found by
    file, so packages without one are not imported)."""
    import importlib
    import pkgutil

    from . import __path__ as package_path

    for info in pkgutil.iter_modules(package_path):
        if info.ispkg and (Path(info.module_finder.path) / info.name / "report_sections.py").is_file():
            importlib.import_module(f"{__package__}.{info.name}.report_sections")


def write_report(
    model: torch.nn.Module, image: torch.Tensor, path: str | Path, image_name: str = "image", progress: bool = False
) -> Path:
    """Build the report for ``image`` and write it to ``path`` (one HTML file)."""
    return build_report(model, image, image_name, progress=progress).save(path)


def prediction_chart(ranked: list[Prediction], title: str = "") -> Image.Image:
    """Top-k bar chart of one image's predictions."""
    return bar_chart(
        [f"{p.label} ({p.class_id})" for p in ranked], [p.probability for p in ranked], title=title, dpi=PRINT_DPI
    )


@report_section(0, "prediction")
def prediction_section(model, image, context) -> Section:
    """The input and its top-5 classes."""
    ranked = predict(model, image, 5)[0]
    context["predictions"] = ranked
    context["target"] = ranked[0].class_id
    return Section(
        "Prediction",
        figures=[
            Figure(picture_of(image), f"input ({image.shape[-1]}x{image.shape[-2]})"),
            Figure(prediction_chart(ranked, f"{getattr(model, 'name', 'model')}: top-5"), "softmax probabilities"),
        ],
        headers=["rank", "class id", "label", "probability"],
        rows=[[str(i + 1), str(p.class_id), p.label, f"{p.probability:.4f}"] for i, p in enumerate(ranked)],
    )


@report_section(10, "layers")
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
