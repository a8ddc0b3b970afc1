"""Shape vs texture bias on cue-conflict images (Geirhos et al. 2019, "ImageNet-trained CNNs are
biased towards texture").

A cue-conflict image has the shape (content) of an object of one of 16 coarse categories and the
texture (style) of another; it is made here with Gatys style transfer
(:func:`convscope.optimize.style.stylize`), as in the paper. The model's decision is the argmax
over the 16 categories of the *mean* ImageNet probability of each category's member classes — the
convention of the model-vs-human toolbox (Geirhos et al. 2021), whose class lists
(``modelvshuman/helper/human_categories.py``, derived from WordNet) are copied below. Trials whose
shape and texture category agree are dropped; shape bias = shape decisions / (shape + texture
decisions); decisions of a third category count for neither. Per-category values group the
trials by their *shape* category (the paper's per-category plot).

Deviations: the paper's 1,280 stimuli are not bundled (no data is downloaded); images are made on
the fly from the user's folders (``FOLDER/<category>/*.png``) or, offline, from bundled
scikit-image pictures (see :data:`OFFLINE_SOURCES`), at a small size (128 px) with a short Adam
run, and the stylization uses the model under test unless another is given (the paper used
VGG-19 AdaIN/Gatys stimuli made once for all models).
"""

from __future__ import annotations

__all__ = [
    "CATEGORIES",
    "category_decisions",
    "CATEGORY_NAMES",
    "category_scores",
    "CueConflict",
    "load_sources",
    "make_cue_conflict",
    "OFFLINE_SOURCES",
    "offline_sources",
    "require_imagenet_classifier",
    "shape_bias",
    "ShapeBiasResult",
    "stimulus_shape_bias",
]

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ..checks import check_images
from ..errors import ConvscopeError
from ..hooks import frozen
from ..images import image_files, load_image
from ..optimize.style import stylize
from ..render import Panel, pyplot, figure

#: ImageNet class indices of the 16 categories, from model-vs-human ``HumanCategories``
#: (bethgelab/model-vs-human, modelvshuman/helper/human_categories.py).
CATEGORIES: dict[str, tuple[int, ...]] = {
    "airplane": (404,),
    "bear": (294, 295, 296, 297),
    "bicycle": (444, 671),
    "bird": (
        8,
        10,
        11,
        12,
        13,
        14,
        15,
        16,
        18,
        19,
        20,
        22,
        23,
        24,
        80,
        81,
        82,
        83,
        87,
        88,
        89,
        90,
        91,
        92,
        93,
        94,
        95,
        96,
        98,
        99,
        100,
        127,
        128,
        129,
        130,
        131,
        132,
        133,
        135,
        136,
        137,
        138,
        139,
        140,
        141,
        142,
        143,
        144,
        145,
    ),
    "boat": (472, 554, 625, 814, 914),
    "bottle": (440, 720, 737, 898, 899, 901, 907),
    "car": (436, 511, 817),
    "cat": (281, 282, 283, 284, 285, 286),
    "chair": (423, 559, 765, 857),
    "clock": (409, 530, 892),
    "dog": tuple(i for i in range(152, 269) if i not in (192, 204, 227, 242, 251, 258, 260, 264)),
    "elephant": (385, 386),
    "keyboard": (508, 878),
    "knife": (499,),
    "oven": (766,),
    "truck": (555, 569, 656, 675, 717, 734, 864, 867),
}
CATEGORY_NAMES = tuple(CATEGORIES)

#: The offline example: bundled scikit-image pictures that the embedded model puts, at 128 px,
#: into one of the 16 categories. chelsea (a cat) and clock (a wall clock, category "clock")
#: really are; coins (read as "typewriter keyboard", p = .95) and page (read as "pill bottle",
#: p = .97) carry the model's own label, so the offline numbers are about these four pictures
#: only, not about ImageNet objects.
OFFLINE_SOURCES: dict[str, str] = {"chelsea": "cat", "clock": "clock", "coins": "keyboard", "page": "bottle"}


def category_scores(probabilities: torch.Tensor) -> torch.Tensor:
    """(N, 1000) ImageNet probabilities -> (N, 16): the mean probability of each category's classes."""
    if probabilities.ndim != 2 or probabilities.shape[1] != 1000:
        raise ConvscopeError(f"expected (N, 1000) ImageNet probabilities, got {tuple(probabilities.shape)}")
    return torch.stack([probabilities[:, list(indices)].mean(1) for indices in CATEGORIES.values()], 1)


def require_imagenet_classifier(model: nn.Module) -> None:
    """One line, before any work, when ``model`` does not output the 1000 ImageNet classes (the 16
    categories are sets of ImageNet classes, so no other classifier can be scored)."""
    labels = getattr(model, "labels", None)
    if labels is None:
        side = getattr(model, "input_shape", (224, 224))
        parameter = next(model.parameters(), None)
        with frozen(model), torch.no_grad():
            outputs = model(torch.zeros(1, 3, *side, device=parameter.device if parameter is not None else "cpu"))
        count = outputs.shape[-1] if outputs.ndim == 2 else None
    else:
        count = len(labels)
    if count != 1000:
        raise ConvscopeError(
            f"shape bias scores ImageNet's 1000 classes (16 categories of them); "
            f"{getattr(model, 'name', 'the model')} has {count if count is not None else 'other'} outputs"
        )


def category_decisions(model: nn.Module, images: torch.Tensor, batch_size: int = 16) -> list[str]:
    """The model's 16-category decision for each image (argmax of :func:`category_scores`)."""
    images = check_images(images)
    device = next(model.parameters()).device
    with frozen(model), torch.no_grad():
        scores = torch.cat(
            [
                category_scores(model(images[i : i + batch_size].to(device)).softmax(-1)).cpu()
                for i in range(0, len(images), batch_size)
            ]
        )
    return [CATEGORY_NAMES[i] for i in scores.argmax(1).tolist()]


@dataclass
class CueConflict:
    """Cue-conflict trials: ``images`` (N, 3, H, W) in [0, 1] with the shape of ``shapes[i]`` and the
    texture of ``textures[i]`` (category names); ``names`` say which pictures were combined;
    ``content_layer`` and ``style_layers`` are the layers the style transfer used."""

    images: torch.Tensor
    shapes: list[str]
    textures: list[str]
    names: list[str]
    content_layer: str = ""
    style_layers: list[str] = field(default_factory=list)

    def grid(self, path: str | Path | None = None, columns: int = 6):
        """All cue-conflict images with their shape / texture categories."""
        panels = [
            Panel(image, f"{shape} shape\n{texture} texture")
            for image, shape, texture in zip(self.images, self.shapes, self.textures)
        ]
        return figure(
            panels,
            path,
            columns=min(columns, len(panels)),
            panel_size=2.2,
            suptitle="cue-conflict images (shape x texture)",
        )


def load_sources(folder: str | Path, size: int = 128) -> list[tuple[str, str, torch.Tensor]]:
    """``FOLDER/<category>/*`` -> [(category, file stem, (1, 3, size, size))]; categories are the 16.
    Pictures are squashed to ``size`` (not centre-cropped): the whole outline is the shape cue."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConvscopeError(f"no such folder: {folder}")
    sources = []
    for path in image_files(folder):
        category = path.relative_to(folder).parts[0] if len(path.relative_to(folder).parts) > 1 else None
        if category not in CATEGORIES:
            raise ConvscopeError(
                f"{path}: images must lie in FOLDER/<category>/ with a category among {', '.join(CATEGORY_NAMES)}"
            )
        sources.append((category, path.stem, load_image(path, size, "squash")))
    return sources


def offline_sources(size: int = 128) -> list[tuple[str, str, torch.Tensor]]:
    """The bundled pictures of :data:`OFFLINE_SOURCES` as (category, name, image)."""
    return [
        (category, name, load_image(f"sample:{name}", size, "squash")) for name, category in OFFLINE_SOURCES.items()
    ]


def make_cue_conflict(
    model: nn.Module,
    shapes: Sequence[tuple[str, str, torch.Tensor]],
    textures: Sequence[tuple[str, str, torch.Tensor]],
    *,
    content_layer: str | None = None,
    style_layers: Sequence[str] | None = None,
    steps: int = 100,
    style_weight: float = 30.0,
    content_weight: float = 1.0,
    lr: float = 0.02,
    seed: int = 0,
    progress: bool = True,
) -> CueConflict:
    """Stylize every shape image with every texture image of another category (one batched run).

    Args:
        model: the CNN whose layers drive the style transfer (any model :func:`stylize` accepts).
        shapes, textures: (category, name, (1, 3, H, W)) triples, e.g. from :func:`load_sources`;
            all of one size.
        content_layer, style_layers: :func:`stylize`'s layers; by default the tested ones on VGG and
            the embedded model, else read from the model (content: the last layer with a spatial
            map, as Grad-CAM's default; see :func:`~convscope.optimize.style.auto_style_layers`).
        steps, style_weight, content_weight, lr, seed, progress: passed to :func:`stylize`
            ``style_weight=30`` (not stylize's 3) lets the texture cover the surface, as
            Geirhos et al.'s fully stylized images do, while the outline stays visible at 128 px.

    Pairs of the same category are not made (they would be dropped by :func:`shape_bias`).
    """
    pairs = [(s, t) for s in shapes for t in textures if s[0] != t[0]]
    if not pairs:
        raise ConvscopeError("no shape/texture pair of different categories: give at least two categories")
    content = torch.cat([s[2] for s, _ in pairs])
    style = torch.cat([t[2] for _, t in pairs]).to(content.device)
    result = stylize(
        model,
        content,
        style,
        content_layer=content_layer,
        style_layers=style_layers,
        steps=steps,
        style_weight=style_weight,
        content_weight=content_weight,
        lr=lr,
        seed=seed,
        progress=progress,
    )
    return CueConflict(
        result.image.detach(),
        [s[0] for s, _ in pairs],
        [t[0] for _, t in pairs],
        [f"{s[1]}+{t[1]}" for s, t in pairs],
        result.content_layer,
        list(result.style_layers),
    )


@dataclass
class ShapeBiasResult:
    """Per-trial decisions and the shape bias (Geirhos 2019).

    Attributes:
        decisions, shapes, textures: per trial (category names); same-category trials are dropped.
    """

    decisions: list[str]
    shapes: list[str]
    textures: list[str]

    @property
    def shape_hits(self) -> int:
        return sum(d == s for d, s in zip(self.decisions, self.shapes))

    @property
    def texture_hits(self) -> int:
        return sum(d == t for d, t in zip(self.decisions, self.textures))

    @property
    def shape_bias(self) -> float:
        """shape / (shape + texture) decisions; NaN when there are none of either."""
        hits = self.shape_hits + self.texture_hits
        return self.shape_hits / hits if hits else float("nan")

    def per_category(self) -> dict[str, tuple[float, int]]:
        """Shape category -> (shape bias of its trials, shape + texture decisions among them)."""
        table = {}
        for category in CATEGORY_NAMES:
            chosen = [i for i, s in enumerate(self.shapes) if s == category]
            if chosen:
                part = ShapeBiasResult(
                    [self.decisions[i] for i in chosen],
                    [self.shapes[i] for i in chosen],
                    [self.textures[i] for i in chosen],
                )
                table[category] = (part.shape_bias, part.shape_hits + part.texture_hits)
        return table

    def plot(self, path: str | Path | None = None, label: str = "model"):
        """The paper's layout: categories on the y axis, fraction of shape decisions on x (texture 0
        on the left, shape 1 on the right), one point per category and the overall value as a line."""
        plt = pyplot()
        fig, axis = plt.subplots(figsize=(4.5, 6))
        rows = {c: i for i, c in enumerate(CATEGORY_NAMES)}
        values = [(rows[c], v) for c, (v, n) in self.per_category().items() if n]
        if values:
            axis.scatter([v for _, v in values], [r for r, _ in values], color="tab:red", zorder=3, label=label)
        if self.shape_bias == self.shape_bias:
            axis.axvline(
                self.shape_bias,
                color="tab:red",
                lw=1.5,
                ls="--",
                label=f"overall {self.shape_bias:.2f} (n={self.shape_hits + self.texture_hits})",
            )
        axis.set_yticks(range(len(CATEGORY_NAMES)), CATEGORY_NAMES)
        axis.invert_yaxis()
        axis.set_xlim(-0.02, 1.02)
        axis.set_xlabel("fraction of 'shape' decisions")
        top = axis.secondary_xaxis("top", functions=(lambda x: 1 - x, lambda x: 1 - x))
        top.set_xlabel("fraction of 'texture' decisions")
        axis.grid(axis="x", alpha=0.3)
        if values:
            axis.legend(loc="lower left", fontsize=8)
        fig.tight_layout()
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, dpi=100)
        plt.close(fig)
        return path


def shape_bias(model: nn.Module, trials: CueConflict, batch_size: int = 16) -> ShapeBiasResult:
    """The model's 16-category decisions on cue-conflict ``trials`` and its shape bias.

    >>> trials = make_cue_conflict(model, offline_sources(), offline_sources())
    >>> result = shape_bias(model, trials)
    >>> 0 <= result.shape_bias <= 1
    True
    """
    keep = [i for i, (s, t) in enumerate(zip(trials.shapes, trials.textures)) if s != t]
    decisions = category_decisions(model, trials.images[keep], batch_size) if keep else []
    return ShapeBiasResult(decisions, [trials.shapes[i] for i in keep], [trials.textures[i] for i in keep])


def stimulus_shape_bias(
    model: nn.Module,
    folder: str | Path,
    size: int = 224,
    batch_size: int = 16,
    strict: bool = False,
    workers: int | None = None,
    preprocess: str = "resize",
):
    """Shape bias on a user's cue-conflict stimuli in the model-vs-human layout, streamed.

    ``FOLDER/<shape category>/<shape><n>-<texture><m>.png`` (Geirhos et al.'s released
    ``cue-conflict`` folder, e.g. ``cat/cat7-elephant1.png``): the shape is the folder, the texture
    the part after the ``-`` without its digits. Unreadable files are skipped and named
    (``strict``: stop). Returns ``(ShapeBiasResult, names, SkipLog)``; same-category stimuli
    are dropped as in the paper.
    """
    import re

    from ..data import SkipLog, open_dataset, stream

    folder = Path(folder)
    dataset = open_dataset(folder, size, preprocess, labels=None)
    shapes, textures = [], []
    for name in dataset.ids:
        parts = Path(name).parts
        stem = Path(name).stem
        if len(parts) < 2 or parts[0] not in CATEGORIES or "-" not in stem:
            raise ConvscopeError(
                f"{folder / name}: expected <shape category>/<shape><n>-<texture><m>.png with "
                f"categories among {', '.join(CATEGORY_NAMES)} (the model-vs-human cue-conflict layout)"
            )
        texture = re.sub(r"\d+$", "", stem.split("-", 1)[1])
        if texture not in CATEGORIES:
            raise ConvscopeError(f"{folder / name}: texture {texture!r} is not one of the 16 categories")
        shapes.append(parts[0])
        textures.append(texture)
    skips = SkipLog()
    decisions, kept = [], []
    device = next(model.parameters()).device
    with frozen(model), torch.no_grad():
        for batch in stream(dataset, batch_size, workers, device, strict, skips):
            scores = category_scores(model(batch.images.to(device)).softmax(-1)).cpu()
            for index, choice in zip(batch.indices.tolist(), scores.argmax(1).tolist()):
                if shapes[index] != textures[index]:
                    decisions.append(CATEGORY_NAMES[choice])
                    kept.append(index)
    if not kept:
        raise ConvscopeError(f"no readable cue-conflict stimuli with different shape and texture in {folder}")
    result = ShapeBiasResult(decisions, [shapes[i] for i in kept], [textures[i] for i in kept])
    return result, [dataset.ids[i] for i in kept], skips
