"""The attribution package's report sections: every registered method side by side, and the
sanity check (Adebayo et al. 2018)."""

from __future__ import annotations

__all__ = ["attribution_section", "sanity_section"]

import time

from ..render import overlay_with_bar
from ..sections import Figure, Section, report_section
from ..targets import class_name


@report_section(30, "attribution")
def attribution_section(model, image, context) -> Section | None:
    """Every registered attribution method for the top class, side by side."""
    from . import METHODS, attribute, display_mode, display_unit, quick_options

    target = context.get("target")
    label = class_name(getattr(model, "labels", None), target)
    figures, rows = [], []
    for method in METHODS.names():
        start = time.perf_counter()
        options = quick_options(method)  # the registry's smaller settings (under a minute on two cores)
        heat = attribute(model, image, target, method=method, **options)
        seconds = time.perf_counter() - start
        tile = overlay_with_bar(image[0], heat[0], mode=display_mode(method), unit=display_unit(method, options))
        figures.append(Figure(tile, f"{method} ({seconds:.2f} s)"))
        rows.append([method, ", ".join(f"{k}={v}" for k, v in options.items()) or "defaults", f"{seconds:.2f}"])
    return Section(
        f"Attribution maps for “{label}” ({target})",
        figures=figures,
        headers=["method", "options", "seconds"],
        rows=rows,
        collapsed_table=True,
        note="each colour bar says its scale: CAM maps min-max (jet, 0 = the map's min, 1 = its max); gradient maps "
        "|value| / its 99.5th percentile, coloured only where strong; occlusion, KernelSHAP and LIME signed in their "
        "own units on a diverging map centred at 0 (red: the region supports the class, blue: it speaks against it)",
    )


@report_section(31, "sanity")
def sanity_section(model, image, context) -> Section | None:
    """Adebayo et al. (2018) cascading randomization for saliency and Grad-CAM."""
    from .sanity import sanity_check, sanity_figure

    result = sanity_check(model, image, context.get("target"), methods=("saliency", "gradcam"), progress=False)
    rows = [[method, step, f"{rho:.3f}", f"{ssim:.3f}"] for method, step, rho, ssim in result.rows()]
    return Section(
        "Sanity check (model-parameter randomization)",
        # at screen resolution: its 224-px maps gain nothing at 300 dpi and the report would grow 4x (0.65 -> 2.8 MB)
        figures=[
            Figure(
                sanity_figure(result, image), "maps as layers are re-initialised from the top (cascading)", tall=True
            )
        ],
        headers=["method", "randomized down to", "Spearman vs trained", "SSIM vs trained"],
        rows=rows,
        collapsed_table=True,
        note="a method that explains the model changes its map as the weights are randomized",
    )
