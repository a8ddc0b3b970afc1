"""Folder names and label-file entries -> class ids of a model.

A class can be named by its id (``"207"``), by the model's class name (``"golden retriever"``,
``"golden_retriever"``) or by its ImageNet WordNet ID (``"n02099601"``). WordNet IDs use the
ILSVRC-2012 synset order that timm ships (:class:`timm.data.ImageNetInfo`, the sorted 1000
synsets, the order of every ImageNet-1k checkpoint), so they are accepted when the model has
1000 classes (or no class names at all).
"""

from __future__ import annotations

__all__ = ["ClassNames", "folder_classes", "imagenet_wnids", "WNID"]

import difflib
import re
from functools import lru_cache
from typing import Sequence

from ..errors import ConvscopeError

WNID = re.compile(r"^n\d{8}$")


@lru_cache(maxsize=1)
def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 ILSVRC-2012 WordNet IDs in class-id order (timm's copy, offline)."""
    from timm.data import ImageNetInfo

    return tuple(ImageNetInfo().label_names())


@lru_cache(maxsize=1)
def _wnid_index() -> dict[str, int]:
    return {wnid: i for i, wnid in enumerate(imagenet_wnids())}


class ClassNames:
    """Resolve class names for one model (``labels``: its class names, or None)."""

    def __init__(self, labels: Sequence[str] | None = None, num_classes: int | None = None):
        self.labels = list(labels) if labels is not None else None
        self.num_classes = num_classes if num_classes is not None else (len(self.labels) if self.labels else None)
        self._lowered: dict = {}
        for i, label in enumerate(self.labels or []):
            self._lowered.setdefault(label.lower().replace("_", " "), i)

    def index(self, name: str) -> int | None:
        """The class id named by ``name``, or None when it names none of this model's classes."""
        text = str(name).strip()
        if text.isdigit():
            value = int(text)
            return value if self.num_classes is None or value < self.num_classes else None
        if WNID.match(text):
            if self.num_classes in (None, 1000) and text in _wnid_index():
                return _wnid_index()[text]
            return None
        return self._lowered.get(text.lower().replace("_", " "))

    def require(self, name: str, where: str = "") -> int:
        found = self.index(name)
        if found is not None:
            return found
        hint = ""
        if self.labels:
            close = difflib.get_close_matches(str(name).lower().replace("_", " "), list(self._lowered), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        kinds = "a class id, a WordNet ID (1000-class models)" + (" or a class name" if self.labels else "")
        raise ConvscopeError(f"{where}{name!r} is not {kinds} of this model{hint}")


def folder_classes(
    names: Sequence[str], labels: Sequence[str] | None, num_classes: int | None = None
) -> dict[str, int]:
    """Class subfolder names -> class ids.

    With a model's ``labels`` (or a class count) every folder must name one of its classes (id,
    name or WordNet ID); without either, digit names are ids and other names are numbered in
    sorted order (torchvision's ``ImageFolder``: what training a new model wants).
    """
    names = sorted(names)
    if labels is None and num_classes is None:
        if all(n.isdigit() for n in names):
            return {n: int(n) for n in names}
        return {n: i for i, n in enumerate(names)}
    resolver = ClassNames(labels, num_classes)
    return {n: resolver.require(n, "class folder ") for n in names}
