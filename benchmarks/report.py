"""Time the report's sections and the web app's API next to a bare forward+backward.

Run: python benchmarks/report.py  (embedded EfficientNet-Lite0, sample:chelsea at 224 px, CPU).
There is no anchor library for a report or a web app; the reference is the model itself:
each line's ratio is its time over one bare forward+backward of the same image.
"""

from __future__ import annotations


import torch
from fastapi.testclient import TestClient
from rich.console import Console
from rich.table import Table

import convscope
from convscope.report import build_report
from convscope.server import create_app
from timing import repeat, save_results  # noqa: E402  (benchmarks/timing.py: the shared helper)


def best_of(function, repeat_count: int = 3) -> float:
    return repeat(function, repeat_count, "min")


def main() -> None:
    model = convscope.load_model()
    image = convscope.load_image("sample:chelsea")

    def forward_backward():
        x = image.clone().requires_grad_(True)
        with convscope.frozen(model):
            model(x)[0, 285].backward()

    forward_backward()
    bare = best_of(forward_backward, 5)
    rows = [("bare forward+backward (1 image, 224 px)", bare)]
    report = build_report(model, image, "sample:chelsea")
    rows += [(f"report: {s.title}", s.seconds) for s in report.sections[:-1]]
    rows.append(("report: total", report.seconds))
    with TestClient(create_app({"efficientnet_lite0": model})) as client:
        for name, path, body in [
            ("API /api/predict", "/api/predict", {"image": "sample:chelsea", "topk": 5}),
            ("API /api/explain gradcam", "/api/explain", {"image": "sample:chelsea", "method": "gradcam"}),
            ("API /api/attack fgsm", "/api/attack", {"image": "sample:chelsea", "method": "fgsm", "eps": 2 / 255}),
        ]:
            rows.append(
                (
                    f"{name} (first)",
                    best_of(lambda path=path, body=body: client.post(path, json=body).raise_for_status(), 1),
                )
            )
            rows.append(
                (
                    f"{name} (cached)",
                    best_of(lambda path=path, body=body: client.post(path, json=body).raise_for_status(), 3),
                )
            )
    table = Table("what", "seconds", "x bare fwd+bwd", title=f"report and web app, {torch.get_num_threads()} threads")
    save_results("report", [{"what": name, "seconds": seconds} for name, seconds in rows])
    for name, seconds in rows:
        table.add_row(name, f"{seconds:.3f}", f"{seconds / bare:.1f}")
    Console().print(table)


if __name__ == "__main__":
    main()
