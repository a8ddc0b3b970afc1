"""A resumable training state as tensors + JSON (never a pickle).

``X.safetensors`` holds every tensor: the model's state dict (``model.*``), the optimiser's
per-parameter state (``optimizer.<index>.<key>``: momentum buffers, Adam's moments and step) and
the random-number generators of every rank (``rng.<rank>.<name>`` as uint8 tensors: torch's global
generator, CUDA's, the data loader's and the training attack's). ``X.json`` (also in the weights'
header) holds the rest: the epoch and optimiser step reached, the training settings, the optimiser's
hyper-parameters and non-tensor state, and the history so far. Loading reads tensors and JSON
only; no string from the file is imported or called.
"""

from __future__ import annotations

__all__ = ["STATE_FORMAT", "TrainingState", "read_training_state", "write_training_state"]

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import ConvscopeError


STATE_FORMAT = "convscope-training-state/1"


@dataclass
class TrainingState:
    """What :func:`read_training_state` returns: the tensors by name and the JSON description."""

    tensors: dict[str, torch.Tensor]
    meta: dict

    @property
    def epoch(self) -> int:
        return int(self.meta["epoch"])

    def restore(self, network: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Load the model weights and the optimiser state (hyper-parameters, buffers) into place."""
        model = {k[len("model.") :]: v for k, v in self.tensors.items() if k.startswith("model.")}
        missing, unexpected = network.load_state_dict(model, strict=False)
        if missing or unexpected:
            raise ConvscopeError(
                f"the training state does not fit the network: missing {missing[:3]}, unexpected {unexpected[:3]}"
            )
        per_parameter: dict[int, dict] = {int(k): dict(v) for k, v in self.meta["optimizer"]["scalars"].items()}
        for name, tensor in self.tensors.items():
            if name.startswith("optimizer."):
                _, index, key = name.split(".", 2)
                per_parameter.setdefault(int(index), {})[key] = tensor
        groups = self.meta["optimizer"]["param_groups"]
        if [len(g["params"]) for g in groups] != [len(g["params"]) for g in optimizer.param_groups]:
            raise ConvscopeError("the training state's optimiser has other parameter groups than this network's")
        optimizer.load_state_dict({"state": per_parameter, "param_groups": groups})

    def generator_state(self, rank: int, name: str) -> torch.Tensor | None:
        return self.tensors.get(f"rng.{rank}.{name}")


def write_training_state(
    path: str | Path,
    network: nn.Module,
    optimizer: torch.optim.Optimizer,
    generators: dict[str, torch.Tensor],
    meta: dict,
) -> Path:
    """Write ``path`` (``.safetensors``) and its ``.json``; ``generators`` are ``rng.<rank>.<name>`` states."""
    from safetensors.torch import save_file

    path = Path(path).with_suffix(".safetensors")
    tensors = {f"model.{k}": v.detach().cpu().contiguous().clone() for k, v in network.state_dict().items()}
    saved = optimizer.state_dict()
    scalars: dict[str, dict] = {}
    for index, state in saved["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{key}"] = value.detach().cpu().contiguous().clone()
            else:
                scalars.setdefault(str(index), {})[key] = value
    tensors.update({k: v.cpu().contiguous() for k, v in generators.items()})
    described = {
        "format": STATE_FORMAT,
        **meta,
        "optimizer": {"param_groups": saved["param_groups"], "scalars": scalars},
    }
    text = json.dumps(described, indent=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    save_file(tensors, str(partial), metadata={"convscope": text})
    partial.replace(path)  # a crash while writing never leaves a broken state behind
    path.with_suffix(".json").write_text(text + "\n")
    return path


def read_training_state(path: str | Path) -> TrainingState:
    """The state written by :func:`write_training_state` (``path``: the ``.safetensors`` or its ``.json``)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    path = Path(path)
    path = path.with_suffix(".safetensors") if path.suffix == ".json" else path
    if not path.is_file():
        raise ConvscopeError(f"no training state at {path}")
    try:
        with safe_open(str(path), "pt") as handle:
            text = (handle.metadata() or {}).get("convscope", "")
        tensors = load_file(str(path))
        meta = json.loads(text)
    except (SafetensorError, json.JSONDecodeError, OSError, ValueError) as error:
        raise ConvscopeError(f"{path} is not a training state written by convscope: {error}") from None
    if not isinstance(meta, dict) or meta.get("format") != STATE_FORMAT:
        raise ConvscopeError(f"{path} is not a training state written by convscope ({STATE_FORMAT})")
    return TrainingState(tensors, meta)
