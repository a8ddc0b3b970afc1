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
the robust test accuracy under PGD-20 (``alpha = 2.5 * eps / 20``, Madry's rule, random start): a
cheap upper bound for the curve; the final number comes from
:func:`convscope.robustness.evaluation.evaluate_robustness` (AutoAttack).

The optimiser and schedule are a :class:`~convscope.robustness.recipe.Recipe` (SGD with momentum
and weight decay, piecewise or cosine, as the papers); the training state is written every
``checkpoint_every`` epochs as tensors + JSON (:mod:`~convscope.robustness.train_state`) and
``resume=True`` continues from it to the same weights as an uninterrupted run.

Data-parallel: when started by ``torchrun`` (``WORLD_SIZE`` > 1) :func:`train` joins the process
group (NCCL on CUDA, gloo on CPU), wraps the network in ``DistributedDataParallel``, shards the
training set with a ``DistributedSampler`` (the global batch is ``batch_size`` x world size) and
shards the evaluation (counts all-reduced); rank 0 writes the checkpoint.

The bundled offline data set is scikit-learn's digits (Alpaydin & Kaynak 1998: 1,797 8x8
greyscale digits), upsampled bilinearly and repeated to 3 channels.
"""

from __future__ import annotations

__all__ = [
    "adversarial_batch",
    "ADVERSARIAL_METHODS",
    "digits_dataset",
    "crop_flip",
    "EpochRecord",
    "small_cnn",
    "trades_batch",
    "trades_loss",
    "train",
    "training_split",
    "TrainingHistory",
]

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from ..attacks.gradient import pgd
from ..data.stream import loader_options
from ..errors import ConvscopeError
from ..progress import progress_bar
from .evaluation import evaluate_robustness, join_process_group, rank_and_world, share_buffers
from .global_batchnorm import global_batchnorm
from .recipe import Recipe
from .train_state import read_training_state, write_training_state

ADVERSARIAL_METHODS = ("pgd", "fgsm-rs", "trades")


def digits_dataset(size: int = 16, split: str = "train", test_fraction: float = 0.2, seed: int = 0) -> TensorDataset:
    """scikit-learn's digits as RGB images (N, 3, size, size) in [0, 1] with labels 0-9
    (:func:`convscope.data.specs.digits_images`, also the dataset spec ``digits``).

    A fixed stratified split (``seed``): ``split="train"`` or ``"test"``.
    """
    from ..data.specs import digits_images

    return TensorDataset(*digits_images(size, split, test_fraction, seed))


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
    """One epoch: mean training loss, clean and PGD test accuracy, wall seconds of training, last learning rate."""

    epoch: int
    loss: float
    clean_accuracy: float
    robust_accuracy: float
    seconds: float
    lr: float = float("nan")


@dataclass
class TrainingHistory:
    """What :func:`train` did: its settings and one :class:`EpochRecord` per epoch."""

    adversarial: str | None
    eps: float
    epochs: list[EpochRecord] = field(default_factory=list)
    eval_steps: int = 20

    @property
    def final(self) -> EpochRecord:
        return self.epochs[-1]

    def as_records(self) -> list[dict]:
        return [asdict(record) for record in self.epochs]

    def plot(self, path: str | Path, subject: str = "") -> Path:
        """Clean and robust test accuracy per epoch, titled with ``subject`` (the model and the
        data, e.g. ``"small_cnn on digits"``), the kind of training and the last epoch's numbers."""
        import matplotlib.ticker

        from ..render import pyplot, save_figure, wrap

        plt = pyplot()

        figure, axis = plt.subplots(figsize=(5.4, 3.6))
        numbers = [record.epoch for record in self.epochs]
        axis.plot(numbers, [r.clean_accuracy for r in self.epochs], "o-", label="clean")
        if self.eval_steps > 0:
            label = f"PGD-{self.eval_steps}, L∞ ε = {255 * self.eps:.3g}/255 (upper bound)"
            axis.plot(numbers, [r.robust_accuracy for r in self.epochs], "s-", label=label)
        axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        axis.set_xlabel("epoch")
        axis.set_ylabel("test accuracy (fraction correct)")
        axis.set_ylim(0, 1)
        axis.grid(alpha=0.3)
        axis.legend()
        last = self.epochs[-1] if self.epochs else None
        numbers_text = ""
        if last is not None:
            numbers_text = f"\nlast epoch: clean {last.clean_accuracy:.3f}" + (
                f", PGD-{self.eval_steps} {last.robust_accuracy:.3f}" if self.eval_steps > 0 else ""
            )
        kind = f"{self.adversarial} adversarial" if self.adversarial else "standard"
        title = f"{subject + ': ' if subject else ''}{kind} training, test accuracy per epoch{numbers_text}"
        axis.set_title(wrap(title, 5.0, 9), fontsize=9)
        figure.tight_layout()
        save_figure(figure, path)
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


def crop_flip(x: torch.Tensor, generator: torch.Generator | None = None, padding: int = 4) -> torch.Tensor:
    """The CIFAR augmentation of the adversarial-training papers (after He et al. 2016): a random
    ``H x W`` crop of the image zero-padded by ``padding`` pixels, and a horizontal flip with probability 1/2."""
    n, _, height, width = x.shape
    padded = F.pad(x, (padding,) * 4)
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator, device=x.device)
    flips = torch.rand(n, generator=generator, device=x.device) < 0.5
    rows = (offsets[0, :, None] + torch.arange(height, device=x.device))[:, None, :, None]
    columns = (offsets[1, :, None] + torch.arange(width, device=x.device))[:, None, None, :]
    columns = torch.where(flips[:, None, None, None], columns.flip(-1), columns)
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    channels = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return padded[batch, channels, rows, columns]


def training_split(
    spec: str, size: int, seed: int = 0, test: str | None = None
) -> tuple[Dataset, Dataset, list[str], str]:
    """(train set, test set, class names, how the test set was chosen) for ``convscope train``.

    ``spec`` is ``"digits"`` (its fixed split) or any labelled dataset spec of the dataset layer
    (resized to ``size``); the test set is ``test`` when given (e.g. ``cifar10:ROOT`` beside
    ``cifar10-train:ROOT``), else a seeded 20 % hold-out of ``spec``.
    """
    from ..data import labelled_pairs, open_dataset

    if spec == "digits" and test is None:
        return digits_dataset(size), digits_dataset(size, "test"), [str(d) for d in range(10)], "digits' test split"
    dataset = digits_dataset(size) if spec == "digits" else labelled_pairs(open_dataset(spec, size, "resize"))
    labels = dataset.tensors[1].tolist() if isinstance(dataset, TensorDataset) else dataset.labels
    if len(set(labels)) < 2:
        raise ConvscopeError(f"{spec!r} needs at least two classes")
    named = getattr(getattr(dataset, "dataset", None), "classes", None) or {}
    names = [named.get(i, str(i)) for i in range(max(labels) + 1)]
    if test is not None:
        held_out = labelled_pairs(open_dataset(test, size, "resize"))
        if max(held_out.labels) >= len(names):
            raise ConvscopeError(f"the test set {test!r} has classes the training set {spec!r} does not")
        return dataset, held_out, names, f"the test set {test}"
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed)).tolist()
    cut = max(1, len(order) // 5)
    return (
        torch.utils.data.Subset(dataset, order[cut:]),
        torch.utils.data.Subset(dataset, order[:cut]),
        names,
        f"a 20 % hold-out of {spec} (seed {seed})",
    )


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
    recipe: Recipe | None = None,
    eval_steps: int = 20,
    eval_size: int | None = None,
    checkpoint: str | Path | None = None,
    seed: int = 0,
    progress: bool = True,
    device: str | torch.device | None = None,
    trades_beta: float = 6.0,
    *,
    resume: bool = False,
    checkpoint_every: int = 1,
    workers: int = 0,
    augment: bool = False,
) -> TrainingHistory:
    """Train ``network`` (in place), standard or adversarial; evaluate under PGD after every epoch.

    Args:
        network: a module taking images in [0, 1] (normalisation inside) -> logits.
        train_data, test_data: datasets of ``(image (3, H, W) in [0, 1], label)``.
        epochs, batch_size (per process): the optimisation; recipe: optimiser and schedule
            (default :class:`~convscope.robustness.recipe.Recipe`: SGD lr 0.1, momentum 0.9, weight
            decay 5e-4, ×0.1 at 50 % and 75 % of the epochs, as Madry 2018 / Rice 2020).
        adversarial: None (standard), ``"pgd"`` (Madry 2018), ``"fgsm-rs"`` (Wong 2020) or ``"trades"``
            (Zhang 2019; ``trades_beta`` weighs its KL term).
        eps: L∞ budget of training and evaluation attacks (pixel units).
        alpha, steps: step size and steps of the training attack (defaults in :func:`adversarial_batch`).
        eval_steps: PGD steps of the per-epoch robust evaluation (0: clean accuracy only);
            eval_size: evaluate on the first ``eval_size`` test images only.
        checkpoint: training state written every ``checkpoint_every`` epochs and after the last
            (rank 0; :mod:`~convscope.robustness.train_state`: model, optimiser, step, RNG states, history).
        resume: continue from ``checkpoint`` when it exists (same settings and number of processes);
            the result equals an uninterrupted run.
        progress: progress bar (Ctrl-C stops after the current batch and returns the history so far).
        device: where to train (default: the network's device; under torchrun each rank's GPU).
        workers: data-loading processes (pinned memory on CUDA).
        augment: random crops (4 px zero padding) and horizontal flips of every training batch
            (:func:`crop_flip`, the papers' CIFAR augmentation; not for digits).

    Returns:
        :class:`TrainingHistory`; ``network`` holds the trained weights (in eval mode).

    >>> history = train(small_cnn(), digits_dataset(), digits_dataset(split="test"), adversarial="pgd")
    """
    if adversarial not in (None, *ADVERSARIAL_METHODS):
        raise ConvscopeError(
            f"adversarial must be one of {', '.join(ADVERSARIAL_METHODS)} or None, got {adversarial!r}"
        )
    if epochs < 1 or batch_size < 1 or eps < 0 or checkpoint_every < 1 or workers < 0:
        raise ConvscopeError("epochs, batch_size and checkpoint_every must be positive, eps and workers non-negative")
    if resume and checkpoint is None:
        raise ConvscopeError("resume needs the checkpoint to continue from")
    recipe = recipe or Recipe()
    distributed = join_process_group()
    rank, world = rank_and_world()
    if device is None:
        device = (
            torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            if distributed and torch.cuda.is_available()
            else next(network.parameters()).device
        )
    device = torch.device(device)
    network.to(device)
    torch.manual_seed(seed)
    sampler: torch.utils.data.DistributedSampler | None = (
        torch.utils.data.DistributedSampler(train_data, world, rank, shuffle=True, seed=seed) if distributed else None
    )
    generators = {"loader": torch.Generator().manual_seed(seed)}
    loader = DataLoader(
        train_data,
        batch_size=batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        generator=generators["loader"],
        **loader_options(device, workers, passes=epochs),
    )
    if len(loader) == 0:
        raise ConvscopeError("the training set is empty")
    optimizer = recipe.build(network.parameters())
    generators["attack"] = torch.Generator(device=device).manual_seed(seed + 7919 * rank)
    if augment:
        generators["augment"] = torch.Generator(device=device).manual_seed(seed + 7919 * rank + 1)
    evaluation = "pgd" if eval_steps > 0 else "none"
    settings = {
        "adversarial": adversarial,
        "eps": eps,
        "alpha": alpha,
        "steps": steps,
        "trades_beta": trades_beta,
        "epochs": epochs,
        "batch_size": batch_size,
        "seed": seed,
        "world_size": world,
        "train_size": len(train_data),  # type: ignore[arg-type]
        "augment": augment,
        "recipe": recipe.as_dict(),
    }
    history = TrainingHistory(adversarial, eps, eval_steps=eval_steps)
    first, step = 1, 0
    if resume and checkpoint is not None and Path(checkpoint).with_suffix(".safetensors").is_file():
        state = read_training_state(checkpoint)
        changed = [k for k in settings if state.meta["settings"].get(k) != settings[k]]
        if changed:
            raise ConvscopeError(
                f"{checkpoint} was written with other settings ({', '.join(changed)}: "
                + "; ".join(f"{state.meta['settings'].get(k)!r} there, {settings[k]!r} now" for k in changed)
                + "); resume with the same ones"
            )
        state.restore(network, optimizer)
        _restore_generators(state, generators, rank, device)
        history.epochs = [EpochRecord(**record) for record in state.meta["history"]]
        first, step = state.epoch + 1, int(state.meta["step"])
    model = nn.parallel.DistributedDataParallel(network) if distributed else network
    note = "keeping the epochs so far" + ("; resume=True (CLI: --resume) continues" if checkpoint else "")
    bar = progress_bar(
        epochs * len(loader),
        f"train ({adversarial or 'standard'})",
        progress and rank == 0,
        interrupted=note,
        completed=(first - 1) * len(loader),
    )
    with bar as advance:
        for epoch in range(first, epochs + 1):
            if sampler is not None:
                sampler.set_epoch(epoch)
            network.train()
            started, total_loss, batches = time.perf_counter(), 0.0, 0
            with global_batchnorm(distributed):  # BatchNorm over the global batch, not each rank's share
                for x, y in loader:
                    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                    if augment:
                        x = crop_flip(x, generators["augment"])
                    rate = recipe.lr_at(step, len(loader), epochs)
                    for group in optimizer.param_groups:
                        group["lr"] = rate
                    if adversarial == "trades":
                        loss = trades_loss(
                            model, x, trades_batch(model, x, eps, alpha, steps, generators["attack"]), y, trades_beta
                        )
                    else:
                        if adversarial is not None:
                            x = adversarial_batch(model, x, y, adversarial, eps, alpha, steps, generators["attack"])
                        loss = F.cross_entropy(model(x), y)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    step, total_loss, batches = step + 1, total_loss + loss.item(), batches + 1
                    advance(1, f"epoch {epoch} loss {total_loss / batches:.3f} lr {rate:.3g}")
            seconds = time.perf_counter() - started
            share_buffers(network)  # every rank evaluates and saves rank 0's BatchNorm statistics
            network.eval()
            result = evaluate_robustness(
                network, test_data, eps, evaluation, steps=eval_steps, limit=eval_size, seed=seed
            )
            robust = result.robust_accuracy if result.robust_accuracy is not None else float("nan")
            history.epochs.append(
                EpochRecord(epoch, total_loss / max(batches, 1), result.clean_accuracy, robust, seconds, rate)
            )
            if checkpoint is not None and (epoch % checkpoint_every == 0 or epoch == epochs):
                states = _generator_states(generators, rank, world, device)
                if rank == 0:
                    meta = {"epoch": epoch, "step": step, "settings": settings, "history": history.as_records()}
                    write_training_state(checkpoint, network, optimizer, states, meta)
    network.eval()
    return history


def _generator_states(generators: dict[str, torch.Generator], rank: int, world: int, device: torch.device) -> dict:
    """Every rank's random-number generator states as ``rng.<rank>.<name>`` uint8 tensors (gathered on all)."""
    local = {"torch": torch.get_rng_state(), **{name: g.get_state() for name, g in generators.items()}}
    if device.type == "cuda":
        local["cuda"] = torch.cuda.get_rng_state(device)
    if world == 1:
        return {f"rng.{rank}.{name}": state for name, state in local.items()}
    gathered = {}
    for name, state in local.items():
        mine = state.to(device)
        parts = [torch.empty_like(mine) for _ in range(world)]
        torch.distributed.all_gather(parts, mine)
        gathered.update({f"rng.{r}.{name}": part.cpu() for r, part in enumerate(parts)})
    return gathered


def _restore_generators(state, generators: dict[str, torch.Generator], rank: int, device: torch.device) -> None:
    for name, generator in [("torch", None), *generators.items(), ("cuda", None)]:
        saved = state.generator_state(rank, name)
        if saved is None:
            continue
        if name == "torch":
            torch.set_rng_state(saved)
        elif name == "cuda":
            if device.type == "cuda":
                torch.cuda.set_rng_state(saved, device)
        else:
            generator.set_state(saved)
