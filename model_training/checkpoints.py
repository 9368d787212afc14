"""Training checkpoints, one folder per step: weights as safetensors, optimiser and loader state
as plain tensors and primitives (``state.pt``, loaded with ``weights_only=True``), ``meta.json``.
A folder appears whole: it is written beside its final name and renamed."""

from __future__ import annotations

import glob
import json
import os
import shutil

import torch


def write_checkpoint(path: str, weights: dict[str, torch.nn.Module], state: dict, meta: dict) -> None:
    """``weights``: file name (without ``.safetensors``) -> module whose state dict it holds."""
    from safetensors.torch import save_file

    tmp = path + ".tmp"
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    for name, module in weights.items():
        save_file({k: v.contiguous() for k, v in module.state_dict().items()}, os.path.join(tmp, f"{name}.safetensors"))
    torch.save(state, os.path.join(tmp, "state.pt"))
    with open(os.path.join(tmp, "meta.json"), "w", encoding="utf-8") as fh:
        json.dump(meta, fh, indent=1)
    if os.path.exists(path):
        shutil.rmtree(path)
    os.replace(tmp, path)


def read_checkpoint(path: str, weights: dict[str, torch.nn.Module]) -> dict:
    """Load each module's ``<name>.safetensors`` from ``path``; returns ``state.pt``."""
    from safetensors.torch import load_file

    for name, module in weights.items():
        module.load_state_dict(load_file(os.path.join(path, f"{name}.safetensors")))
    return torch.load(os.path.join(path, "state.pt"), weights_only=True)


def latest_checkpoint(out: str) -> str | None:
    found = sorted(glob.glob(os.path.join(out, "checkpoints", "step_*[0-9]")))
    return found[-1] if found else None


def held_out_shards(pattern: str | None) -> list[str]:
    """The shards of ``val_shards`` (none when it is unset); a pattern matching nothing is an error."""
    from transforms import storage

    found = storage.glob(pattern) if pattern else []
    if pattern and not found:
        raise ValueError(f"val_shards {pattern!r} matches no shard")
    return found
