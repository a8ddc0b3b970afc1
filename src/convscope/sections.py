"""The report's building blocks, apart from the report itself so that each feature can
declare its section next to its code: :class:`Figure`, :class:`Section` and the registry
:data:`REPORT_SECTIONS` (metadata ``order``: where the section stands in the report).

A section is ``section(model, image, context) -> Section | None`` registered with
:func:`report_section`; a package contributes sections in a module ``report_sections.py``
(``convscope.attribution.report_sections``, ...), which :func:`convscope.report.build_report`
finds and imports.
"""

from __future__ import annotations

__all__ = ["Figure", "REPORT_SECTIONS", "Section", "SectionFn", "picture_of", "report_section"]

import base64
from dataclasses import dataclass, field
from typing import Callable

import torch
from PIL import Image

from .images import to_uint8
from .registry import Registry


#: the tallest a picture is shown, in CSS px (the template's ``max-height``)
SHOWN_HEIGHT = 360


@dataclass
class Figure:
    """One picture of a section: a PIL image and its caption; ``tall``: shown at its own size
    (a grid of many small panels, e.g. the sanity check, unreadable if shrunk to a row's height)."""

    picture: Image.Image
    caption: str = ""
    tall: bool = False

    @property
    def data_uri(self) -> str:
        from .render import png_bytes

        return "data:image/png;base64," + base64.b64encode(png_bytes(self.picture)).decode("ascii")

    @property
    def width(self) -> int:
        """The width it is shown at (CSS px): a chart drawn at print resolution at its size in
        inches (as on screen), a photo at its own size; at most :data:`SHOWN_HEIGHT` tall."""
        from .render import SCREEN_DPI

        dpi = float(self.picture.info.get("dpi", (SCREEN_DPI,))[0]) or SCREEN_DPI
        width, height = self.picture.width * SCREEN_DPI / dpi, self.picture.height * SCREEN_DPI / dpi
        return round(width if self.tall else width * min(1.0, SHOWN_HEIGHT / height))


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


SectionFn = Callable[[torch.nn.Module, torch.Tensor, dict], "Section | None"]
#: The report's sections; the report shows them by their ``order``.
REPORT_SECTIONS: Registry[SectionFn] = Registry("report section", order=100)


def report_section(order: int, name: str | None = None) -> Callable[[SectionFn], SectionFn]:
    """Register a report section (``order`` decides where it stands): ``REPORT_SECTIONS.register``."""
    return REPORT_SECTIONS.register(name, order=order) if name else REPORT_SECTIONS.register(order=order)


def picture_of(image: torch.Tensor) -> Image.Image:
    """(1, 3, H, W) or (3, H, W) in [0, 1] -> PIL image."""
    return Image.fromarray(to_uint8(image.detach().cpu()))
