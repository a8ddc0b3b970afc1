"""Standard and adversarial training, on one machine or data-parallel under ``torchrun``.

Adversarial training replaces each training batch by adversarial examples made against the
current weights and minimises the loss on them:

* ``"pgd"``: Madry et al. 2018, L∞ PGD with a random start (``steps`` steps of size ``alpha``).
* ``"fgsm-rs"``: Wong, Rice & Kolter 2020 ("fast is better than free"), one FGSM step of
  ``1.25 * eps`` from a uniform random start in the eps-ball, i.e. PGD with one step.

* ``"trades"``: Zhang et al. 2019, minimise ``CE(f(x), y) + β · KL(f(x) ‖ f(x'))`` where ``x'``
  maximises the KL term by ``steps`` signed steps of ``alpha`` (default ``2.5 * eps / steps``) in
  the eps-ball from ``x + 0.001·N(0, 1)``; β = ``trades_beta`` (6, the paper's CIFAR-10 setting).
  As the authors' code, the inner maximisation runs the model in eval mode.

PGD and FGSM-RS use :func:`convscope.attacks.gradient.pgd` with ``eval_mode=False`` (the attack sees the
model in training mode, as in both papers). Every epoch reports the clean test accuracy and
the robust test accuracy under PGD-20 (``alpha = 2.5 * eps / 20``, Madry's rule, random start).

Data-parallel: when started by ``torchrun`` (``WORLD_SIZE`` > 1) :func:`train` joins the process
group (NCCL on CUDA, gloo on CPU), wraps the network in ``DistributedDataParallel``, shards the
training set with a ``DistributedSampler`` (the global batch is ``batch_size`` x world size) and
sums the evaluation counts of all ranks; rank 0 writes the checkpoint.

The bundled offline data set is scikit-learn's digits (Alpaydin & Kaynak 1998: 1,797 8x8
greyscale digits), upsampled bilinearly and repeated to 3 channels.
"""

from __future__ import annotations

__all__ = [
    "adversarial_batch",
    "ADVERSARIAL_METHODS",
    "digits_dataset",
    "EpochRecord",
    "evaluate",
    "save_checkpoint",
    "small_cnn",
    "trades_batch",
    "trades_loss",
    "train",
    "TrainingHistory",
]

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from ..attacks.gradient import pgd
from ..errors import ConvscopeError
from ..progress import progress_bar

ADVERSARIAL_METHODS = ("pgd", "fgsm-rs", "trades")


def digits_dataset(size: int = 16, split: str = "train", test_fraction: float = 0.2, seed: int = 0) -> TensorDataset:
    """scikit-learn's digits as RGB images (N, 3, size, size) in [0, 1] with labels 0-9.

    A fixed stratified split (``seed``): ``split="train"`` or ``"test"``.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if split not in ("train", "test"):
        raise ConvscopeError(f"split must be 'train' or 'test', got {split!r}")
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16
    images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    labels = torch.tensor(digits.target, dtype=torch.long)
    train_ids, test_ids = train_test_split(
        torch.arange(len(labels)).numpy(), test_size=test_fraction, random_state=seed, stratify=labels.numpy()
    )
    ids = torch.as_tensor(train_ids if split == "train" else test_ids)
    return TensorDataset(images[ids].expand(-1, 3, -1, -1).contiguous(), labels[ids])


def small_cnn(num_classes: int = 10, width: int = 16, size: int = 16) -> nn.Sequential:
    """A small CNN for ``size`` x ``size`` inputs in [0, 1]: two conv-ReLU-maxpool stages and a
    linear layer on the flattened (size/4)^2 map (digits need the layout, so no global pooling)."""
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * width * (size // 4) ** 2, num_classes),
    )


@dataclass
class EpochRecord:
    """One epoch: mean training loss, clean and PGD-20 test accuracy, wall seconds of training."""

    epoch: int
    loss: float
    clean_accuracy: float
    robust_accuracy: float
    seconds: float


@dataclass
class TrainingHistory:
    """What :func:`train` did: its settings and one :class:`EpochRecord` per epoch."""

    adversarial: str | None
    eps: float
    epochs: list[EpochRecord] = field(default_factory=list)

    @property
    def final(self) -> EpochRecord:
        return self.epochs[-1]

    def plot(self, path: str | Path) -> Path:
        """Clean and robust test accuracy per epoch."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axis = plt.subplots(figsize=(5, 3.4))
        numbers = [record.epoch for record in self.epochs]
        axis.plot(numbers, [r.clean_accuracy for r in self.epochs], "o-", label="clean")
        axis.plot(numbers, [r.robust_accuracy for r in self.epochs], "s-", label=f"PGD-20, eps={self.eps:.3g}")
        axis.set_xlabel("epoch")
        axis.set_ylabel("test accuracy")
        axis.set_ylim(0, 1)
        axis.grid(alpha=0.3)
        axis.legend()
        axis.set_title(f"training: {self.adversarial or 'standard'}")
        figure.tight_layout()
        figure.savefig(path, dpi=100)
        plt.close(figure)
        return Path(path)


def trades_batch(
    network: nn.Module,
    x: torch.Tensor,
    eps: float,
    alpha: float | None = None,
    steps: int = 10,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """TRADES' inner maximisation (Zhang 2019): ``x'`` in the L∞ eps-ball maximising ``KL(f(x) ‖ f(x'))``."""
    from ..hooks import frozen

    alpha = 2.5 * eps / steps if alpha is None else alpha
    x = x.detach()
    with frozen(network):
        with torch.no_grad():
            natural = network(x).softmax(-1)
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        adv = (x + 0.001 * noise).clamp(0, 1)
        for _ in range(steps):
            point = adv.detach().requires_grad_(True)
            with torch.enable_grad():
                divergence = F.kl_div(network(point).log_softmax(-1), natural, reduction="sum")
                (grad,) = torch.autograd.grad(divergence, point)
            adv = (x + (adv + alpha * grad.sign() - x).clamp(-eps, eps)).clamp(0, 1)
    return adv.detach()


def trades_loss(
    network: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor, beta: float = 6.0
) -> torch.Tensor:
    """``CE(f(x), y) + β · KL(f(x) ‖ f(x_adv))`` averaged over the batch (Zhang 2019, eq. 5)."""
    logits = network(x)
    robust = F.kl_div(network(x_adv).log_softmax(-1), logits.softmax(-1), reduction="batchmean")
    return F.cross_entropy(logits, y) + beta * robust


def adversarial_batch(
    network: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    method: str,
    eps: float,
    alpha: float | None = None,
    steps: int = 7,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The training examples of one adversarial-training step (model kept in its current mode).

    ``"pgd"``: ``steps`` steps of ``alpha`` (default ``2.5 * eps / steps``) from a random start;
    ``"fgsm-rs"``: one step of ``alpha`` (default ``1.25 * eps``) from a random start.
    """
    if method == "pgd":
        return pgd(
            network,
            x,
            y,
            eps,
            alpha or 2.5 * eps / steps,
            steps,
            random_start=True,
            generator=generator,
            eval_mode=False,
        )
    if method == "fgsm-rs":
        return pgd(network, x, y, eps, alpha or 1.25 * eps, 1, random_start=True, generator=generator, eval_mode=False)
    raise ConvscopeError(f"adversarial must be one of {', '.join(ADVERSARIAL_METHODS)} or None, got {method!r}")


def evaluate(
    network: nn.Module, data: Dataset, eps: float, steps: int = 20, batch_size: int = 256, seed: int = 0
) -> tuple[float, float]:
    """(clean accuracy, robust accuracy under L∞ PGD-``steps``) of ``network`` on ``data``.

    Under ``torchrun`` each rank evaluates its own shard and the counts are summed.
    """
    rank, world = _rank_and_world()
    device = next(network.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed + rank)
    indices = list(range(rank, len(data), world))
    clean = robust = 0
    for start in range(0, len(indices), batch_size):
        x, y = _stack([data[i] for i in indices[start : start + batch_size]], device)
        with torch.no_grad():
            clean += int((network(x).argmax(-1) == y).sum())
        if steps > 0:
            x_adv = pgd(network, x, y, eps, 2.5 * eps / steps, steps, random_start=True, generator=generator)
            with torch.no_grad():
                robust += int((network(x_adv).argmax(-1) == y).sum())
    counts = torch.tensor([clean, robust, len(indices)], dtype=torch.float64, device=device)
    if world > 1:
        torch.distributed.all_reduce(counts)
    return float(counts[0] / counts[2]), float(counts[1] / counts[2]) if steps > 0 else float("nan")


def train(
    network: nn.Module,
    train_data: Dataset,
    test_data: Dataset,
    epochs: int = 10,
    adversarial: str | None = None,
    eps: float = 0.2,
    alpha: float | None = None,
    steps: int = 7,
    batch_size: int = 64,
    lr: float = 3e-3,
    eval_steps: int = 20,
    eval_size: int | None = None,
    checkpoint: str | Path | None = None,
    seed: int = 0,
    progress: bool = True,
    device: str | torch.device | None = None,
    trades_beta: float = 6.0,
) -> TrainingHistory:
    """Train ``network`` (in place) with Adam, standard or adversarial; evaluate after every epoch.

    Args:
        network: a module taking images in [0, 1] (normalisation inside) -> logits.
        train_data, test_data: datasets of ``(image (3, H, W) in [0, 1], label)``.
        epochs, batch_size (per process), lr: the optimisation.
        adversarial: None (standard), ``"pgd"`` (Madry 2018), ``"fgsm-rs"`` (Wong 2020) or ``"trades"``
            (Zhang 2019; ``trades_beta`` weighs its KL term).
        eps: L∞ budget of training and evaluation attacks (pixel units).
        alpha, steps: step size and steps of the training attack (defaults in :func:`adversarial_batch`).
        eval_steps: PGD steps of the robust evaluation (0 skips it); eval_size: evaluate on the
            first ``eval_size`` test images only.
        checkpoint: file written after every epoch (rank 0): state dict, settings, history.
        progress: progress bar (Ctrl-C stops after the current batch and returns the history so far).
        device: where to train (default: the network's device; under torchrun each rank's GPU).

    Returns:
        :class:`TrainingHistory`; ``network`` holds the trained weights (in eval mode).

    >>> history = train(small_cnn(), digits_dataset(), digits_dataset(split="test"), adversarial="pgd")
    """
    if adversarial not in (None, *ADVERSARIAL_METHODS):
        raise ConvscopeError(
            f"adversarial must be one of {', '.join(ADVERSARIAL_METHODS)} or None, got {adversarial!r}"
        )
    if epochs < 1 or batch_size < 1 or eps < 0:
        raise ConvscopeError("epochs and batch_size must be positive and eps non-negative")
    distributed = _join_process_group()
    rank, world = _rank_and_world()
    if device is None:
        device = (
            torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            if distributed and torch.cuda.is_available()
            else next(network.parameters()).device
        )
    network.to(device)
    torch.manual_seed(seed)
    model = nn.parallel.DistributedDataParallel(network) if distributed else network
    sampler: torch.utils.data.DistributedSampler | None = (
        torch.utils.data.DistributedSampler(train_data, world, rank, shuffle=True, seed=seed) if distributed else None
    )
    loader = DataLoader(
        train_data,
        batch_size=batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        generator=torch.Generator().manual_seed(seed),
    )
    optimizer = torch.optim.Adam(network.parameters(), lr=lr)
    attack_generator = torch.Generator(device=device).manual_seed(seed + 7919 * rank)
    evaluation = (
        test_data if eval_size is None else torch.utils.data.Subset(test_data, range(min(eval_size, len(test_data))))
    )
    history = TrainingHistory(adversarial, eps)
    with progress_bar(epochs * len(loader), f"train ({adversarial or 'standard'})", progress and rank == 0) as advance:
        for epoch in range(1, epochs + 1):
            if sampler is not None:
                sampler.set_epoch(epoch)
            network.train()
            started, total_loss, batches = time.perf_counter(), 0.0, 0
            for x, y in loader:
                x, y = x.to(device), y.to(device)
                if adversarial == "trades":
                    loss = trades_loss(
                        model, x, trades_batch(model, x, eps, alpha, steps, attack_generator), y, trades_beta
                    )
                else:
                    if adversarial is not None:
                        x = adversarial_batch(model, x, y, adversarial, eps, alpha, steps, attack_generator)
                    loss = F.cross_entropy(model(x), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total_loss, batches = total_loss + loss.item(), batches + 1
                advance(1, f"epoch {epoch} loss {total_loss / batches:.3f}")
            seconds = time.perf_counter() - started
            network.eval()
            clean, robust = evaluate(network, evaluation, eps, eval_steps, seed=seed)
            history.epochs.append(EpochRecord(epoch, total_loss / max(batches, 1), clean, robust, seconds))
            if checkpoint is not None and rank == 0:
                save_checkpoint(network, history, checkpoint)
    network.eval()
    return history


def save_checkpoint(network: nn.Module, history: TrainingHistory, path: str | Path) -> Path:
    """``{"state_dict", "history"}`` with ``torch.save`` (loadable with ``weights_only=True``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"adversarial": history.adversarial, "eps": history.eps, "epochs": [asdict(e) for e in history.epochs]}
    torch.save({"state_dict": network.state_dict(), "history": record}, path)
    return path


def _stack(items: Sequence[tuple[torch.Tensor, int]], device) -> tuple[torch.Tensor, torch.Tensor]:
    return (
        torch.stack([item[0] for item in items]).to(device),
        torch.as_tensor([int(item[1]) for item in items], device=device),
    )


def _rank_and_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _join_process_group() -> bool:
    """Join the torchrun process group when ``WORLD_SIZE`` > 1 (once); True when distributed."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not torch.distributed.is_available():
        return False
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return True
