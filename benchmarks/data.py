"""The dataset layer measured: accuracy on the real labelled samples, throughput of the streaming
loader against a bare loop over the same tensors, and peak memory flat in the number of images.

Run: ``python benchmarks/data.py [accuracy] [throughput] [costs] [memory] [ray] [--device cpu|cuda] [--images 64]``.

* accuracy: the embedded model on ``samples:imagenet`` (20 real ImageNet validation images with
  their labels): top-1/top-5, FGSM and PGD-10 success (over the initially correct images) at
  1, 2, 4/255, and mCE (15 corruptions x 5 severities, on the fly) against the ground truth.
* throughput: ``attack-eval`` (FGSM), ``robustness`` (contrast 3, on the fly and on the released
  ImageNet-C layout) and batch ``explain`` (saliency) through the dataset layer, reading
  ImageNet-sized JPEGs at 224 px, once per ``--workers`` count (``0,1``), next to a bare loop doing
  the same forward(+backward) over the same images already decoded in memory, interleaved in
  ``--rounds`` rounds; ratio = bare seconds / convscope seconds per round, median (min-max) (goal
  >= 0.9); saved to ``benchmarks/results/data-throughput-jpeg-DATE.json``.
* costs: CPU ms per image of reading a file vs the model's passes at one thread, and the ceiling
  they imply (``data-costs-DATE.json``).
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
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import convscope
from convscope.attacks.evaluate import evaluate_attack
from convscope.attribution.batch import explain_dataset
from convscope.images import sample_array
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


def jpeg_folder(root: Path, count: int, quality: int = 90) -> Path:
    """``count`` distinct ImageNet-sized JPEGs (500 x 375, one in five 375 x 500, quality
    ``quality``): random crops of the 20 labelled ImageNet samples and four bundled photos, in one
    flat folder, named like ImageNet's validation files."""
    from PIL import Image

    sources = [Image.open(p).convert("RGB") for p in sorted(convscope.data.samples_folder().glob("imagenet_*.jpg"))]
    sources += [Image.fromarray(sample_array(n)).convert("RGB") for n in ("chelsea", "coffee", "astronaut", "rocket")]
    generator = torch.Generator().manual_seed(0)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        picture = sources[i % len(sources)]
        width, height = (375, 500) if i % 5 == 4 else (500, 375)
        scale = 0.7 + 0.3 * float(torch.rand(1, generator=generator))
        crop_width = int(min(picture.width, picture.height * width / height) * scale)
        crop_height = int(crop_width * height / width)
        left = int(torch.randint(0, picture.width - crop_width + 1, (1,), generator=generator))
        top = int(torch.randint(0, picture.height - crop_height + 1, (1,), generator=generator))
        crop = picture.crop((left, top, left + crop_width, top + crop_height)).resize((width, height), Image.BICUBIC)
        crop.save(root / f"ILSVRC2012_val_{i:08d}.JPEG", quality=quality)
    return root


def released_tree(root: Path, images: torch.Tensor, corruption: str, severity: int) -> Path:
    """The released ImageNet-C layout ``CORRUPTION/SEVERITY/WNID/*.JPEG``: the model-size crops
    corrupted once and saved as JPEG quality 85 (how the release was written), in 10 WordNet-ID
    folders. ``robustness`` reads them as they are (no corruption, no resize: already at size)."""
    from PIL import Image

    from convscope.images import to_uint8

    corrupted = convscope.corrupt(images, corruption, severity, seed=0)
    for i, image in enumerate(corrupted):
        folder = root / corruption / str(severity) / convscope.data.imagenet_wnids()[i % 10]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(to_uint8(image)).save(folder / f"ILSVRC2012_val_{i:08d}.JPEG", quality=85)
    return root


def cpu_seconds() -> tuple[float, float]:
    """CPU seconds (user + system) of this process, and of its finished children (the loader workers)."""
    mine, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return mine.ru_utime + mine.ru_stime, children.ru_utime + children.ru_stime


def timed_rounds(functions: dict, rounds: int) -> dict[str, list[tuple[float, float, float]]]:
    """(wall, main-process CPU, loader-worker CPU) seconds of each function in each round; all
    functions run in turn every round, so the load of a shared machine hits them alike."""
    times: dict[str, list[tuple[float, float, float]]] = {name: [] for name in functions}
    for _ in range(rounds):
        for name, function in functions.items():
            wall, (main, workers) = time.perf_counter(), cpu_seconds()
            function()
            after = cpu_seconds()
            times[name].append((time.perf_counter() - wall, after[0] - main, after[1] - workers))
    return times


def spread(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"median": statistics.median(ordered), "min": ordered[0], "max": ordered[-1]}


def throughput(device: str, count: int, size: int, batch: int, rounds: int, worker_counts: list[int]) -> Path:
    """Each command through the dataset layer, once per loader worker count, next to a bare loop
    doing the same model work over the same images already decoded and resized in memory, in turn
    every round; per-round ratios (median, min, max); saves a dated JSON.

    The data is what a user with ImageNet on disk has: ImageNet-sized JPEGs (quality 90) in one
    flat, unlabelled folder (so every command scores against the model's clean predictions and
    attack-eval attacks every image), the model at ``size``; and for ``robustness`` also the
    released ImageNet-C layout (corrupted JPEGs at ``size``, read as they are), whose bare loop runs
    over the decoded corrupted images. The on-the-fly robustness row's bare loop corrupts too (the
    same seeded contrast), and the corruption alone is timed as its own row. Neither side computes
    weight gradients (the weights are frozen for the run, as convscope's methods freeze them)."""
    model = convscope.load_model("efficientnet_lite0", device=device)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    with tempfile.TemporaryDirectory() as tmp:
        folder = jpeg_folder(Path(tmp) / "val", count)
        data = convscope.data.open_dataset(folder, size, labels=model.labels)
        tensors = torch.stack([data[i][0] for i in range(len(data))])
        released = released_tree(Path(tmp) / "imagenet-c", tensors, "contrast", 3)
        released_data = convscope.data.open_dataset(released, size, labels=model.labels)
        released_tensors = torch.stack([released_data[i][0] for i in range(len(released_data))])
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
            """A clean pass and a pass over the contrast-3 copies (corrupted here too)."""
            for i in range(0, count, batch):
                x = tensors[i : i + batch].to(device)
                with torch.no_grad():
                    model(x).argmax(-1).cpu()
                    model(convscope.corrupt(x, "contrast", 3, seed=i)).argmax(-1).cpu()
            synchronize()

        def corruption_only() -> None:
            for i in range(0, count, batch):
                convscope.corrupt(tensors[i : i + batch].to(device), "contrast", 3, seed=i)
            synchronize()

        def bare_released() -> None:
            """One pass over the decoded corrupted images."""
            for i in range(0, count, batch):
                with torch.no_grad():
                    model(released_tensors[i : i + batch].to(device)).argmax(-1).cpu()
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

        def ours(run, workers):
            def timed() -> None:
                run({"batch_size": batch, "size": size, "workers": workers})
                synchronize()

            return timed

        commands = {
            "attack-eval fgsm 1/255": (bare_attack, lambda o: evaluate_attack(model, folder, "fgsm", 1 / 255, **o)),
            "robustness contrast/3 on the fly": (
                bare_robustness,
                lambda o: corruption_errors(model, folder, ["contrast"], [3], progress=False, **o),
            ),
            "robustness contrast/3 released files": (
                bare_released,
                lambda o: corruption_errors(model, released, ["contrast"], [3], progress=False, **o),
            ),
            "explain saliency": (
                bare_explain,
                lambda o: explain_dataset(model, folder, "saliency", Path(tmp) / "maps", resume=False, **o),
            ),
        }
        functions = {"contrast/3 corruption alone": corruption_only}
        for name, (bare, run) in commands.items():
            functions[f"{name} | bare"] = bare
            for workers in worker_counts:
                functions[f"{name} | convscope w{workers}"] = ours(run, workers)
        bare_explain()  # warm up the model (first-call allocations) outside the timings
        load_before = os.getloadavg()
        seconds = timed_rounds(functions, rounds)
        load_after = os.getloadavg()
    print(
        f"throughput, {count} ImageNet-sized JPEGs (q90) -> {size} px, batch {batch}, {device}, "
        f"{torch.get_num_threads()} torch threads, {rounds} interleaved rounds, load {load_before[0]:.1f} -> "
        f"{load_after[0]:.1f} on {os.cpu_count()} CPUs; convscope/bare = bare seconds / convscope seconds per round:"
    )
    corruption = [wall for wall, _, _ in seconds["contrast/3 corruption alone"]]
    print(f"  contrast/3 alone: {1000 * statistics.median(corruption) / count:.1f} ms per image (median)")
    rows = [
        {
            "command": "contrast/3 corruption alone",
            "seconds": corruption,
            "ms_per_image": spread([1000 * c / count for c in corruption]),
        }
    ]
    for name in commands:
        bare = seconds[f"{name} | bare"]
        for workers in worker_counts:
            mine = seconds[f"{name} | convscope w{workers}"]
            ratios = [b[0] / m[0] for b, m in zip(bare, mine)]
            cpu_ratios = [(b[1] + b[2]) / (m[1] + m[2]) for b, m in zip(bare, mine)]
            rows.append(
                {
                    "command": name,
                    "workers": workers,
                    "bare_seconds": [b[0] for b in bare],
                    "convscope_seconds": [m[0] for m in mine],
                    "bare_cpu_seconds": [b[1] + b[2] for b in bare],
                    "convscope_main_cpu_seconds": [m[1] for m in mine],
                    "convscope_worker_cpu_seconds": [m[2] for m in mine],
                    "ratio": spread(ratios),
                    "cpu_ratio": spread(cpu_ratios),
                    "convscope_images_per_second": count / statistics.median(m[0] for m in mine),
                    "bare_images_per_second": count / statistics.median(b[0] for b in bare),
                }
            )
            r, c = rows[-1]["ratio"], rows[-1]["cpu_ratio"]
            worker_ms = 1000 * statistics.median(m[2] for m in mine) / count
            print(
                f"  {name:38s} w{workers}: {r['median']:.2f} ({r['min']:.2f}-{r['max']:.2f})  CPU {c['median']:.2f}"
                f"  [{rows[-1]['convscope_images_per_second']:.1f} vs {rows[-1]['bare_images_per_second']:.1f} img/s;"
                f" worker CPU {worker_ms:.1f} ms/img]"
            )
    return save_results(
        "data-throughput-jpeg",
        rows,
        images=count,
        size=size,
        batch=batch,
        device=device,
        workers=worker_counts,
        rounds=rounds,
        torch_threads=torch.get_num_threads(),
        load_before=load_before,
        load_after=load_after,
        data="ImageNet-sized JPEGs (500x375 / 375x500, quality 90); released tree: 224-px JPEGs quality 85",
    )


def costs(count: int, size: int, batch: int, repeats: int = 5) -> Path:
    """CPU milliseconds per image of each piece of the commands, at one torch thread (CPU time
    is what two cores share, and at one thread it does not count pool wake-ups), median of
    ``repeats``: reading a file (decode + resize + crop) against the model's passes, and the
    ceiling they imply on a machine whose cores the model already fills: the loader's work comes
    out of the same CPU, so convscope/bare <= model / (model + reading)."""
    torch.set_num_threads(1)
    model = convscope.load_model("efficientnet_lite0")
    for parameter in model.parameters():
        parameter.requires_grad_(False)

    def per_image(function, images: int) -> float:
        function()
        values = []
        for _ in range(repeats):
            start = time.process_time()
            function()
            values.append(1000 * (time.process_time() - start) / images)
        return statistics.median(values)

    with tempfile.TemporaryDirectory() as tmp:
        folder = jpeg_folder(Path(tmp) / "val", count)
        data = convscope.data.open_dataset(folder, size, labels=model.labels)
        x = torch.stack([data[i][0] for i in range(batch)])
        released = released_tree(Path(tmp) / "imagenet-c", x, "contrast", 3)
        released_data = convscope.data.open_dataset(released, size, labels=model.labels)

        def forward() -> None:
            with torch.no_grad():
                model(x).argmax(-1)

        def forward_backward() -> None:
            inputs = x.clone().requires_grad_(True)
            model(inputs).max(-1).values.sum().backward()

        def write_maps() -> None:
            np.savez(Path(tmp) / "maps.npz", maps=np.zeros((batch, 1, size, size), np.float32), ids=np.arange(batch))

        pieces = {
            "read a 500x375 JPEG -> 224 px (decode, resize, crop)": per_image(
                lambda: [data[i] for i in range(len(data))], len(data)
            ),
            "read a released 224-px JPEG": per_image(
                lambda: [released_data[i] for i in range(len(released_data))], len(released_data)
            ),
            "contrast/3 corruption": per_image(lambda: convscope.corrupt(x, "contrast", 3, seed=0), batch),
            "forward": per_image(forward, batch),
            "forward + input backward": per_image(forward_backward, batch),
            "write the batch's maps (.npz)": per_image(write_maps, batch),
        }
    read, released_read = (
        pieces["read a 500x375 JPEG -> 224 px (decode, resize, crop)"],
        pieces["read a released 224-px JPEG"],
    )
    forward_ms, backward_ms = pieces["forward"], pieces["forward + input backward"]
    model_work = {
        "attack-eval fgsm": (2 * forward_ms + backward_ms, read),
        "robustness on the fly (2 forwards + corruption)": (
            2 * forward_ms + pieces["contrast/3 corruption"],
            read,
        ),
        "robustness released files (1 forward)": (forward_ms, released_read),
        "explain saliency (forward, forward + backward, maps)": (
            forward_ms + backward_ms,
            read + pieces["write the batch's maps (.npz)"],
        ),
    }
    print(f"CPU ms per image at 1 torch thread, batch {batch}, {size} px (median of {repeats}):")
    for name, value in pieces.items():
        print(f"  {name:55s} {value:7.2f}")
    rows = [{"piece": name, "cpu_ms_per_image": value} for name, value in pieces.items()]
    print("ceiling of convscope/bare when the model fills the cores (bare work / (bare work + loader work)):")
    for name, (work, extra) in model_work.items():
        ceiling = work / (work + extra)
        rows.append({"command": name, "bare_cpu_ms": work, "loader_cpu_ms": extra, "ceiling": ceiling})
        print(f"  {name:55s} {work:7.1f} + {extra:5.1f} ms -> {ceiling:.3f}")
    return save_results("data-costs", rows, images=count, size=size, batch=batch, threads=1, repeats=repeats)


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
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="throughput: interleaved timed rounds")
    parser.add_argument(
        "--workers", default=None, help="throughput: loader worker counts, comma-separated (default: the layer's)"
    )
    args = parser.parse_args()
    if "accuracy" in args.parts:
        accuracy(args.device)
    if "throughput" in args.parts:
        counts = (
            [int(w) for w in args.workers.split(",")] if args.workers else [convscope.data.default_workers(args.device)]
        )
        throughput(args.device, args.images, args.size, args.batch, args.rounds, counts)
    if "costs" in args.parts:
        costs(args.images, args.size, args.batch)
    if "memory" in args.parts:
        memory()
    if "ray" in args.parts:
        ray_calls(args.rounds)


if __name__ == "__main__":
    main()
