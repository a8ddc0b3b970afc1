"""Robustness: common corruptions, adversarial training, input defenses, shape bias."""

from .corruptions import BENCHMARK_CORRUPTIONS, CORRUPTIONS, EXTRA_CORRUPTIONS, corrupt

__all__ = ["BENCHMARK_CORRUPTIONS", "corrupt", "CORRUPTIONS", "EXTRA_CORRUPTIONS"]
