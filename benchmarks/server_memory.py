"""Resident memory of the web app under 50 concurrent requests (issue 13).

Starts the app on a real uvicorn at 127.0.0.1, measures the process RSS (psutil) before, at its
peak (sampled every 20 ms) and after each of 3 rounds of 50 concurrent requests: 20 uploads of a 38 kB 6300x6300 PNG
of zeros (the decompression bomb of the issue, under the 40 M pixel limit), 15 Grad-CAM explains
and 15 predicts on distinct inputs. Prints the numbers and the status codes.

    PYTHONPATH=src python benchmarks/server_memory.py
"""

from __future__ import annotations

import concurrent.futures
import io
import os
import threading
import time

import httpx
import numpy as np
import psutil
from PIL import Image

import convscope
from convscope.server import create_app
from convscope.server.run import running
from convscope.server.store import release_memory

ROUNDS = 3


def main() -> None:
    process = psutil.Process()
    model = convscope.load_model()
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((6300, 6300), np.uint8)).save(buffer, format="PNG")
    bomb = buffer.getvalue()
    app = create_app({"efficientnet_lite0": model})
    with running(app) as url:
        httpx.post(f"{url}/api/predict", json={"image": "sample:chelsea"}, timeout=120)  # warm up
        before = process.memory_info().rss
        peak, stop = [before], threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], process.memory_info().rss)
                time.sleep(0.02)

        def ask(i: int, round_: int = 0):
            if i < 20:
                return httpx.post(f"{url}/api/images", files={"file": (f"{i}.png", bomb, "image/png")}, timeout=300)
            image = ("sample:coffee", "sample:astronaut", "sample:rocket")[i % 3]
            if i < 35:
                return httpx.post(
                    f"{url}/api/explain",
                    json={"image": image, "method": "gradcam", "target": i + 50 * round_},
                    timeout=300,
                )
            return httpx.post(f"{url}/api/predict", json={"image": image, "topk": 1 + i % 20}, timeout=300)

        watcher = threading.Thread(target=sample, daemon=True)
        watcher.start()
        rounds = []
        for round_ in range(ROUNDS):  # the same load again (new Grad-CAM targets): does the memory keep growing?
            start = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(50) as pool:
                codes = [r.status_code for r in pool.map(ask, range(50), [round_] * 50)]
            seconds = time.perf_counter() - start
            time.sleep(1.0)
            rounds.append((seconds, process.memory_info().rss))
        stop.set()
        watcher.join()
        after = rounds[-1][1]
        trimmed = after
        if release_memory():  # glibc: anything freed since the last request's trim
            trimmed = process.memory_info().rss
    counts = {code: codes.count(code) for code in sorted(set(codes))}
    print(f"50 concurrent requests in {seconds:.1f} s, status codes {counts} (last round)")
    print("RSS after each round: " + ", ".join(f"{rss / 2**30:.2f} GiB ({t:.1f} s)" for t, rss in rounds))
    print(
        f"RSS before {before / 2**30:.2f} GiB, peak {peak[0] / 2**30:.2f} GiB, after {after / 2**30:.2f} GiB, "
        f"after malloc_trim {trimmed / 2**30:.2f} GiB (MALLOC_ARENA_MAX={os.environ.get('MALLOC_ARENA_MAX', 'unset')})"
    )


if __name__ == "__main__":
    main()
