"""Checkpoint files of the model cache: where they live, atomic writes, and the checks on loading."""

from __future__ import annotations

import logging
import os
import shlex
import textwrap
from pathlib import Path

import torch

from models.data import REPO_ROOT
from models.train.config import CACHE_ENV, CACHE_FORMAT, CheckpointError, TrainConfig

log = logging.getLogger("models.train")



def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get(CACHE_ENV) or REPO_ROOT / "data" / "cache")


def _atomic_torch_save(obj: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _load_checkpoint(path: Path, want_config: dict, module: torch.nn.Module) -> dict:
    """Load and check a checkpoint; load its weights into `module`. CheckpointError when unusable."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged file; all mean "corrupt"
        first = textwrap.shorten((str(exc).strip().splitlines() or [""])[0], 160, placeholder=" ...")  # torch's
        # messages run to many lines; the first, cut at a word, says what is wrong
        raise CheckpointError(f"checkpoint {path} is corrupt or unreadable ({type(exc).__name__}: {first})") from None
    if not isinstance(blob, dict) or blob.get("format") != CACHE_FORMAT:
        got = blob.get("format") if isinstance(blob, dict) else type(blob).__name__
        raise CheckpointError(f"checkpoint {path} has format {got!r}, expected {CACHE_FORMAT}")
    if blob.get("config") != want_config:
        raise CheckpointError(f"checkpoint {path} was made for another config: {blob.get('config')} != {want_config}")
    state = blob.get("state_dict")
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds no state_dict")
    own = module.state_dict()
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    want = {k: tuple(v.shape) for k, v in own.items()}
    if shapes != want:
        raise CheckpointError(f"checkpoint {path} has tensors {shapes}, the model needs {want}")
    module.load_state_dict(state)
    return blob


def train_command(config: TrainConfig) -> str:
    """The `quasar train` command line that trains `config` (and replaces a bad cache entry of it)."""
    args = ["quasar", "train", "--net", config.net, "--act-bits", str(config.act_bits), "--weight-bits",
            str(config.weight_bits), "--mode", config.mode]
    if config.act_format != "calibrated":  # the format is part of the config the command must rebuild
        args += ["--act-format", config.act_format, "--int-bits",
                 "auto" if config.int_bits is None else str(config.int_bits)]
    for flag, value in (("--dataset", config.dataset), ("--data-dir", config.data_dir)):
        if value is not None:
            args += [flag, str(value)]
    if config.seed:
        args += ["--seed", str(config.seed)]
    return shlex.join(args)


def _handle_bad(exc: CheckpointError, action: str, config: TrainConfig, target: Path) -> None:
    if action == "error":
        raise CheckpointError(f"{exc}. It is left untouched: to retrain it, run `{train_command(config)}` (which "
                              f"replaces it), or delete {target} and rerun this command") from None
    log.warning("%s; retraining it", exc)
