"""The attacks package's report section: an FGSM adversarial example (Goodfellow et al. 2015)."""

from __future__ import annotations

__all__ = ["ATTACK_EPS", "attack_section"]

from ..sections import Figure, Section, report_section
from .figure import attack_pictures

ATTACK_EPS = 2 / 255


@report_section(40, "attack")
def attack_section(model, image, context) -> Section | None:
    """An FGSM adversarial example (Goodfellow et al. 2015) at eps = 2/255."""
    from . import attack

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
