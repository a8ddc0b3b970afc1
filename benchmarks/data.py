"""The dataset layer measured: accuracy on the real labelled samples, throughput of the streaming
loader against a bare loop over the same tensors, and peak memory flat in the number of images.

Run: ``python benchmarks/data.py [accuracy] [throughput] [memory] [ray] [--device cpu|cuda] [--images 64]``.

* accuracy: the embedded model on ``samples:imagenet`` (20 real ImageNet validation images with
  their labels): top-1/top-5, FGSM and PGD-10 success (over the initially correct images) at
  1, 2, 4/255, and mCE (15 corruptions x 5 severities, on the fly) against the ground truth.
* throughput: ``attack-eval`` (FGSM), ``robustness`` (contrast, one severity) and batch
  ``explain`` (saliency) through the dataset layer (PNG files decoded by the loader workers)
  next to a bare loop doing the same forward(+backward) over the same images already in memory
  (attack: clean pass, FGSM on the correct images, their re-check; robustness: clean and
  corrupted passes; explain: predictions and the gradient of the predicted logit), interleaved
  in one run, best of ``--rounds``; ratio = bare seconds / convscope seconds (goal >= 0.9);
  saved to ``benchmarks/results/data-throughput-DATE.json``. ``python benchmarks/data.py
  throughput`` (32 images at 112 px) takes about a minute on 2 quiet cores.
* ray: attack-eval (PGD-3, 2/255) on ``samples:imagenet`` at 48 px, batch 5, one shard per batch:
  the local engine, then ``--rounds`` + 1 calls on a local Ray with 2 CPUs in the same process
  (the first starts Ray and the kept actor pool, the later ones reuse it); equal counts checked;
  saved to ``benchmarks/results/data-ray-DATE.json``.
* memory: peak RSS of a fresh process running attack-eval / robustness on 500 and on 5,000
  generated 32-px images (loader in-process, ``--workers 0``, so the number is the whole run's).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import convscope
from convscope.attacks.evaluate import evaluate_attack
from convscope.attribution.batch import explain_dataset
from convscope.robustness.imagenet_c import corruption_errors

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import save_results  # noqa: E402  (benchmarks/timing.py: the shared helper)


def accuracy(device: str) -> None:
    model = convscope.load_model("efficientnet_lite0", device=device)
    first = evaluate_attack(model, "samples:imagenet", "fgsm", 1 / 255, batch_size=20, workers=0)
    print(f"samples:imagenet (20 labelled): top-1 {first.clean_accuracy:.2f}, top-5 {first.top5_accuracy:.2f}")
    for method, options in (("fgsm", {}), ("pgd", {"steps": 10})):
        for eps in (1, 2, 4):
            report = evaluate_attack(model, "samples:imagenet", method, eps / 255, batch_size=20, workers=0, **options)
            print(
                f"  {method} eps {eps}/255: success {report.success_rate:.3f} of {report.attacked} correct, "
                f"robust accuracy {report.robust_accuracy:.2f}"
            )
    start = time.perf_counter()
    errors = corruption_errors(model, "samples:imagenet", batch_size=20, workers=0, progress=False)
    print(
        f"  mCE {100 * errors.mce():.1f}%, relative mCE {100 * errors.mce(relative=True):.1f}%, clean error "
        f"{errors.clean:.2f} ({time.perf_counter() - start:.0f} s)"
    )


def generated_folder(root: Path, count: int, size: int, classes: bool = True) -> Path:
    """``count`` distinct PNGs (crops of the bundled photos), in class folders 0..9 by index
    (``classes=False``: one flat, unlabelled folder)."""
    photos = [convscope.load_image(f"sample:{name}", None) for name in ("chelsea", "coffee", "astronaut", "rocket")]
    generator = torch.Generator().manual_seed(0)
    for i in range(count):
        photo = photos[i % len(photos)]
        height, width = photo.shape[-2:]
        side = int(min(height, width) * (0.3 + 0.6 * float(torch.rand(1, generator=generator))))
        top = int(torch.randint(0, height - side + 1, (1,), generator=generator))
        left = int(torch.randint(0, width - side + 1, (1,), generator=generator))
        crop = torch.nn.functional.interpolate(
            photo[..., top : top + side, left : left + side],
            size=(size, size),
            mode="bilinear",
            antialias=True,
            align_corners=False,
        ).clamp(0, 1)
        folder = root / str(i % 10) if classes else root
        folder.mkdir(parents=True, exist_ok=True)
        convscope.save_image(crop, folder / f"{i:05d}.png")
    return root


def cpu_seconds() -> float:
    """CPU seconds of this process and its finished children (the loader workers)."""
    mine, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return mine.ru_utime + mine.ru_stime + children.ru_utime + children.ru_stime


def timed_rounds(functions: dict, rounds: int) -> dict[str, tuple[float, float]]:
    """(best wall seconds, best CPU seconds incl. loader workers) of each function, run in turn
    each round so that the load of a shared machine hits them alike."""
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in functions}
    for _ in range(rounds):
        for name, function in functions.items():
            wall, cpu = time.perf_counter(), cpu_seconds()
            function()
            times[name].append((time.perf_counter() - wall, cpu_seconds() - cpu))
    return {name: (min(t[0] for t in values), min(t[1] for t in values)) for name, values in times.items()}


def throughput(device: str, count: int, size: int, batch: int, rounds: int, workers: int | None) -> Path:
    """Each command through the dataset layer next to a bare loop doing the same model work over
    the same images already decoded in memory, in turn each round; best of ``rounds``; saves a dated JSON.

    The images are one flat folder of PNGs (unlabelled), so every command scores against the
    model's clean predictions on both sides and attack-eval attacks every image. Neither side
    computes weight gradients (the weights are frozen for the whole run: convscope's methods
    freeze them, and a bare loop that did not would do more work than the command)."""
    model = convscope.load_model("efficientnet_lite0", device=device)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    with tempfile.TemporaryDirectory() as tmp:
        folder = generated_folder(Path(tmp) / "images", count, size, classes=False)
        data = convscope.data.open_dataset(folder, size, labels=model.labels)
        tensors = torch.stack([data[i][0] for i in range(len(data))])
        loss = torch.nn.functional.cross_entropy

        def synchronize() -> None:
            if device.startswith("cuda"):
                torch.cuda.synchronize()

        def bare_attack() -> None:
            """What attack-eval FGSM computes: clean predictions (the labels), FGSM on the correct
            images (all of them here) and their re-check."""
            for i in range(0, count, batch):
                x = tensors[i : i + batch].to(device)
                with torch.no_grad():
                    y = model(x).argmax(-1)
                x.requires_grad_(True)
                loss(model(x), y).backward()
                with torch.no_grad():
                    model((x + x.grad.sign() / 255).clamp(0, 1)).argmax(-1).cpu()
            synchronize()

        def bare_robustness() -> None:
            """A clean pass and a pass over the contrast-3 copies."""
            for i in range(0, count, batch):
                x = tensors[i : i + batch].to(device)
                with torch.no_grad():
                    model(x).argmax(-1).cpu()
                    model(convscope.corrupt(x, "contrast", 3, seed=i)).argmax(-1).cpu()
            synchronize()

        def bare_explain() -> None:
            """Predictions, then the gradient of each predicted logit (saliency)."""
            for i in range(0, count, batch):
                x = tensors[i : i + batch].to(device)
                with torch.no_grad():
                    target = model(x).argmax(-1)
                x.requires_grad_(True)
                model(x).gather(1, target[:, None]).sum().backward()
                x.grad.abs().amax(1).cpu()
            synchronize()

        def ours(run):
            def timed() -> None:
                run()
                synchronize()

            return timed

        common = {"batch_size": batch, "size": size, "workers": workers}
        commands = {
            "attack-eval fgsm 1/255": (
                bare_attack,
                ours(lambda: evaluate_attack(model, folder, "fgsm", 1 / 255, **common)),
            ),
            "robustness contrast/3": (
                bare_robustness,
                ours(lambda: corruption_errors(model, folder, ["contrast"], [3], progress=False, **common)),
            ),
            "explain saliency": (
                bare_explain,
                ours(lambda: explain_dataset(model, folder, "saliency", Path(tmp) / "maps", resume=False, **common)),
            ),
        }
        functions = {}
        for name, (bare, convscope_run) in commands.items():
            functions[f"{name} | bare"] = bare
            functions[f"{name} | convscope"] = convscope_run
        bare_explain()  # warm up the model (first-call allocations) outside the timings
        seconds = timed_rounds(functions, rounds)
    workers = convscope.data.default_workers() if workers is None else workers
    print(
        f"throughput, {count} PNGs at {size} px, batch {batch}, {device}, {workers} loader worker(s), "
        f"best of {rounds} (load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs):"
    )
    rows = []
    for name in commands:
        (bare, bare_cpu), (mine, mine_cpu) = seconds[f"{name} | bare"], seconds[f"{name} | convscope"]
        rows.append(
            {
                "command": name,
                "bare_seconds": bare,
                "convscope_seconds": mine,
                "bare_cpu_seconds": bare_cpu,
                "convscope_cpu_seconds": mine_cpu,
                "bare_images_per_second": count / bare,
                "convscope_images_per_second": count / mine,
                "ratio": bare / mine,
                "cpu_ratio": bare_cpu / mine_cpu,
            }
        )
        print(
            f"  {name:24s} bare {count / bare:7.1f} img/s  convscope {count / mine:7.1f} img/s  "
            f"convscope/bare {bare / mine:.2f} (CPU seconds: {bare_cpu / mine_cpu:.2f})"
        )
    return save_results(
        "data-throughput", rows, images=count, size=size, batch=batch, device=device, workers=workers, rounds=rounds
    )


def ray_calls(rounds: int) -> Path:
    """Local attack-eval, then the same on Ray ``rounds`` + 1 times in this process (see the module notes)."""
    import ray

    from convscope.data.ray_engine import close_pool

    model = convscope.load_model("efficientnet_lite0")
    options = dict(size=48, batch_size=5, shard_batches=1, workers=0, steps=3)
    started = time.perf_counter()
    local = evaluate_attack(model, "samples:imagenet", "pgd", 2 / 255, **options)
    rows = [{"engine": "local", "seconds": time.perf_counter() - started}]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        for call in range(rounds + 1):
            started = time.perf_counter()
            remote = evaluate_attack(model, "samples:imagenet", "pgd", 2 / 255, engine="ray", **options)
            rows.append({"engine": "ray", "call": call + 1, "seconds": time.perf_counter() - started})
            assert (remote.images, remote.attacked, remote.robust_accuracy) == (
                local.images,
                local.attacked,
                local.robust_accuracy,
            )
    finally:
        close_pool()
        ray.shutdown()
    for row in rows:
        print(f"  {row['engine']:5s} call {row.get('call', 1)}: {row['seconds']:6.1f} s")
    return save_results("data-ray", rows, images=local.images, load=os.getloadavg()[0], **options)


MEMORY_SNIPPET = """
import resource, sys, convscope
from convscope.attacks.evaluate import evaluate_attack
from convscope.robustness.imagenet_c import corruption_errors
model = convscope.load_model("efficientnet_lite0")
if sys.argv[2] == "attack":
    evaluate_attack(model, sys.argv[1], "fgsm", 1 / 255, batch_size=50, size=32, workers=0)
else:
    corruption_errors(model, sys.argv[1], ["contrast"], [3], batch_size=50, size=32, workers=0, progress=False)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def memory() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = generated_folder(Path(tmp) / "images", 5000, 32)
        small = Path(tmp) / "small"
        small.mkdir()
        for path in sorted(folder.rglob("*.png"), key=lambda p: p.name)[:500]:
            (small / path.parent.name).mkdir(exist_ok=True)
            (small / path.parent.name / path.name).symlink_to(path)
        print("peak RSS (MiB) of a fresh process, 32-px PNGs, batch 50, loader in-process:")
        for command in ("attack", "robustness"):
            values = []
            for where in (small, folder):
                out = subprocess.run(
                    [sys.executable, "-c", MEMORY_SNIPPET, str(where), command],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                values.append(int(out.stdout.strip().splitlines()[-1]))
            print(f"  {command:10s} 500 images: {values[0]} MiB   5,000 images: {values[1]} MiB")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("parts", nargs="*", default=["accuracy", "throughput", "memory"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2, help="throughput: timed rounds (best kept)")
    parser.add_argument("--workers", type=int, default=None, help="throughput: loader workers (default: the layer's)")
    args = parser.parse_args()
    if "accuracy" in args.parts:
        accuracy(args.device)
    if "throughput" in args.parts:
        throughput(args.device, args.images, args.size, args.batch, args.rounds, args.workers)
    if "memory" in args.parts:
        memory()
    if "ray" in args.parts:
        ray_calls(args.rounds)


if __name__ == "__main__":
    main()
