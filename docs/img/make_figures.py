"""Regenerate the README's picture, ``docs/img/attribution.png``: ``make figures``.

It is the tour's attribution step (``convscope tour``) on the bundled chelsea photo, loaded the
way every command loads it (the model's preprocessing: resize + centre crop), so the README
shows what a user gets. Prints the class it explains, for the README's caption.
"""

from pathlib import Path

import convscope
from convscope.commands.explain import attribution_step
from convscope.images import model_image
from convscope.predictions import predict


def main() -> None:
    model = convscope.load_model()
    image = model_image("sample:chelsea", model)
    top = predict(model, image, 1)[0][0]
    (path,) = attribution_step(model, image, Path(__file__).parent)
    print(f"{path}: {model.name} explaining {top.label} ({top.class_id}), p = {top.probability:.3f}")


if __name__ == "__main__":
    main()
