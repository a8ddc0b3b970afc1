"""Robustness: common corruptions, adversarial training, input defenses, shape bias."""

from .corruptions import BENCHMARK_CORRUPTIONS, CORRUPTIONS, EXTRA_CORRUPTIONS, corrupt
