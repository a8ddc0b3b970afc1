"""Clean and robust accuracy of a trained network on a labelled test set, sharded across ``torchrun`` ranks.

The attacks (the number always says which one produced it):

* ``"autoattack"``: the AutoAttack protocol (Croce & Hein 2020, :func:`convscope.attacks.autoattack.autoattack`,
  ``version="standard"`` unless told): APGD-CE → APGD-T → FAB-T → Square, each on the points still
  robust. The number RobustBench accepts.
* ``"pgd"``: L∞ PGD-``steps`` with a random start and Madry's step ``2.5·eps/steps`` (an upper bound
  on robust accuracy; cheap, for curves during training).
* ``"none"``: clean accuracy only.

Sharding: the evaluated images (the first ``limit`` of ``data``) are cut into fixed chunks of
``batch_size`` and chunk ``k`` goes to rank ``k mod world``, its random starts seeded by ``seed + k``.
A chunk's computation is therefore the same whatever the number of processes, and the all-reduced
counts of a sharded run equal a single-process run's.
"""

from __future__ import annotations

__all__ = [
    "EVAL_ATTACKS",
    "RobustEvaluation",
    "evaluate_robustness",
    "join_process_group",
    "rank_and_world",
    "share_buffers",
]

import os
import time
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.utils.data import Dataset

from ..attacks.autoattack import VERSIONS, autoattack, wilson_interval
from ..attacks.gradient import pgd
from ..errors import ConvscopeError
from ..hooks import frozen
from ..progress import progress_bar


EVAL_ATTACKS = ("autoattack", "pgd", "none")


@dataclass
class RobustEvaluation:
    """Counts of one evaluation and how they were obtained.

    Attributes:
        attack: ``"autoattack"``, ``"pgd"`` or ``"none"``; protocol: its exact description
            (``"AutoAttack standard (apgd-ce, apgd-t, fab-t, square)"``, ``"PGD-20, alpha 2.5·eps/20, random start"``).
        eps: the L∞ radius (pixel units); images: how many were evaluated, of ``total`` test images.
        clean, robust: correctly classified without / under the attack (robust None for ``"none"``).
        broken_by: for AutoAttack, how many images each stage broke first (``"clean"``: misclassified already).
    """

    attack: str
    protocol: str
    eps: float
    images: int
    total: int
    clean: int
    robust: int | None
    broken_by: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def clean_accuracy(self) -> float:
        return self.clean / max(self.images, 1)

    @property
    def robust_accuracy(self) -> float | None:
        return None if self.robust is None else self.robust / max(self.images, 1)

    @property
    def subset(self) -> str:
        """Which images: ``"all 360 test images"`` or ``"the first 200 of 360 test images"``."""
        if self.images == self.total:
            return f"all {self.total} test images"
        return f"the first {self.images} of {self.total} test images"

    def summary(self) -> str:
        """One line: clean and robust accuracy with their 95 % Wilson intervals, the attack and the subset."""
        low, high = wilson_interval(self.clean, self.images)
        text = f"clean {self.clean_accuracy:.3f} [{low:.3f}, {high:.3f}]"
        if self.robust is not None:
            low, high = wilson_interval(self.robust, self.images)
            text += f", robust {self.robust_accuracy:.3f} [{low:.3f}, {high:.3f}] under {self.protocol}, L∞ eps {self.eps:.4g}"
        return f"{text} (95 % Wilson intervals; {self.subset})"

    def as_dict(self) -> dict:
        """JSON-ready record, with the accuracies and intervals (for the checkpoint's description)."""
        record = asdict(self)
        record["clean_accuracy"] = self.clean_accuracy
        record["clean_interval"] = list(wilson_interval(self.clean, self.images))
        record["subset"] = self.subset
        if self.robust is not None:
            record["robust_accuracy"] = self.robust_accuracy
            record["robust_interval"] = list(wilson_interval(self.robust, self.images))
        return record


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of the ``torch.distributed`` process group; (0, 1) outside one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def join_process_group() -> bool:
    """Join the torchrun process group when ``WORLD_SIZE`` > 1 (once; NCCL on CUDA, gloo on CPU); True when distributed."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not torch.distributed.is_available():
        return False
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return True


def share_buffers(network: nn.Module) -> None:
    """Give every rank rank 0's buffers (BatchNorm statistics), so that all evaluate and save the same network."""
    if rank_and_world()[1] > 1:
        for buffer in network.buffers():
            torch.distributed.broadcast(buffer, 0)


def evaluate_robustness(
    network: nn.Module,
    data: Dataset,
    eps: float,
    attack: str = "autoattack",
    *,
    steps: int | None = None,
    queries: int = 5000,
    limit: int | None = None,
    batch_size: int = 256,
    version: str = "standard",
    seed: int = 0,
    progress: bool = False,
) -> RobustEvaluation:
    """Clean and robust accuracy of ``network`` (images in [0, 1] -> logits) on ``data`` of ``(image, label)``.

    Args:
        attack: ``"autoattack"``, ``"pgd"`` or ``"none"`` (see the module notes).
        steps: PGD steps (default 20) or APGD/FAB iterations of AutoAttack (default 100, the protocol's);
            queries: Square's budget in AutoAttack (5000). Budgets other than the protocol's are named
            in :attr:`RobustEvaluation.protocol`.
        limit: evaluate the first ``limit`` images only (a subset, named as such in the result);
            batch_size: images per chunk (also the sharding unit).
        version: the AutoAttack version (``standard``, ``plus``, ``rand``).
        seed: random starts (chunk ``k`` uses ``seed + k``).

    Under ``torchrun`` every rank evaluates its chunks and the counts are all-reduced; every rank
    returns the same result. The network's mode, weights and ``requires_grad`` are left as they were.

    >>> result = evaluate_robustness(network, test_data, eps=8/255, attack="autoattack", limit=1000)
    >>> print(result.summary())
    """
    if attack not in EVAL_ATTACKS:
        raise ConvscopeError(f"unknown evaluation attack {attack!r}; known: {', '.join(EVAL_ATTACKS)}")
    if attack == "autoattack" and version not in VERSIONS:
        raise ConvscopeError(f"unknown AutoAttack version {version!r}; known: {', '.join(VERSIONS)}")
    steps = (100 if attack == "autoattack" else 20) if steps is None else steps
    if attack != "none" and (steps < 1 or queries < 1):
        raise ConvscopeError("the evaluation attack needs steps >= 1 and queries >= 1")
    if batch_size < 1 or (limit is not None and limit < 1):
        raise ConvscopeError("batch_size and limit must be positive")
    rank, world = rank_and_world()
    device = next(network.parameters()).device
    count = len(data) if limit is None else min(limit, len(data))  # type: ignore[arg-type]
    chunks = list(range(rank, -(-count // batch_size), world))
    stages = VERSIONS[version] if attack == "autoattack" else ()
    totals = torch.zeros(3 + len(stages), dtype=torch.float64)  # clean, robust, images, broken by each stage
    started = time.perf_counter()
    with frozen(network), progress_bar(len(chunks), f"evaluate ({attack})", progress and rank == 0) as advance:
        for chunk in chunks:
            items = [data[i] for i in range(chunk * batch_size, min((chunk + 1) * batch_size, count))]
            x = torch.stack([item[0] for item in items]).to(device)
            y = torch.as_tensor([int(item[1]) for item in items], device=device)
            with torch.no_grad():
                correct = network(x).argmax(-1) == y
            totals[0] += int(correct.sum())
            totals[2] += len(items)
            if attack == "pgd":
                generator = torch.Generator(device=device).manual_seed(seed + chunk)
                x_adv = pgd(network, x, y, eps, 2.5 * eps / steps, steps, random_start=True, generator=generator)
                with torch.no_grad():
                    totals[1] += int((network(x_adv).argmax(-1) == y).sum())
            elif attack == "autoattack":
                result = autoattack(
                    network, x, y, eps, version=version, steps=steps, queries=queries, seed=seed + chunk
                )
                totals[1] += int(result.robust.sum())
                for j, stage in enumerate(stages):
                    totals[3 + j] += sum(broken == stage for broken in result.broken_by)
            advance(1)
    if world > 1:
        reduced = totals.to(device)
        torch.distributed.all_reduce(reduced)
        totals = reduced.cpu()
    images, clean = int(totals[2]), int(totals[0])
    broken_by = {"clean": images - clean, **{s: int(totals[3 + j]) for j, s in enumerate(stages)}} if stages else {}
    budget = "" if (steps, queries) == (100, 5000) else f", {steps} steps, {queries} queries: not the protocol's budget"
    protocols = {
        "autoattack": f"AutoAttack {version} ({', '.join(stages)}{budget})",
        "pgd": f"PGD-{steps} (alpha 2.5·eps/{steps}, random start)",
        "none": "no attack",
    }
    return RobustEvaluation(
        attack,
        protocols[attack],
        float(eps),
        images,
        len(data),  # type: ignore[arg-type]
        clean,
        None if attack == "none" else int(totals[1]),
        broken_by,
        time.perf_counter() - started,
    )
