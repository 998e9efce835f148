"""Float training, post-training quantization and QAT, range extraction, and evaluation."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from models.data import Dataset
from models.export import ModelExport
from models.integer import IntegerModel
from models.nets import get_net
from models.quant import FloatNet, QuantNet
from models.train.config import TrainConfig


def _batches(n: int, batch_size: int, rng: np.random.Generator):
    order = rng.permutation(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def _augment(x: torch.Tensor, shift: int, hflip: bool, rng: np.random.Generator) -> torch.Tensor:
    """Random translation by up to `shift` pixels (zero fill) and optional horizontal flip, per image."""
    b, _, h, w = x.shape
    if shift:
        padded = F.pad(x, (shift, shift, shift, shift))
        dy = rng.integers(0, 2 * shift + 1, b)
        dx = rng.integers(0, 2 * shift + 1, b)
        rows = torch.from_numpy(dy[:, None] + np.arange(h)[None, :])
        cols = torch.from_numpy(dx[:, None] + np.arange(w)[None, :])
        bi = torch.arange(b)[:, None, None]
        x = padded.permute(0, 2, 3, 1)[bi, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()
    if hflip:
        flip = torch.from_numpy(rng.random(b) < 0.5)
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return x


def _fit(
    model,
    forward_loss,
    x: np.ndarray,
    y: np.ndarray,
    epochs: int,
    batch_size: int,
    optimizer,
    rng: np.random.Generator,
    shift: int,
    hflip: bool,
    desc: str,
    progress: bool,
) -> list[dict]:
    steps = max(1, epochs * math.ceil(len(x) / batch_size))
    sched = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    )
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    history = []
    bar = tqdm(range(epochs), desc=desc, disable=not progress, leave=False)
    for epoch in bar:
        model.train()
        total, correct, loss_sum = 0, 0, 0.0
        for idx in _batches(len(x), batch_size, rng):
            ib = torch.from_numpy(idx)
            xb = _augment(xt[ib], shift, hflip, rng)
            loss, logits = forward_loss(xb, yt[ib])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            sched.step()
            loss_sum += loss.item() * len(idx)
            correct += int((logits.argmax(1) == yt[ib]).sum())
            total += len(idx)
        history.append({"epoch": epoch + 1, "loss": loss_sum / total, "train_accuracy": correct / total})
        bar.set_postfix(loss=f"{loss_sum / total:.4f}", acc=f"{correct / total:.4f}")
    model.eval()
    return history


def train_float(config: TrainConfig, data: Dataset, progress: bool = True) -> tuple[FloatNet, list[dict]]:
    r = config.resolved()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = FloatNet(get_net(config.net))
    opt = torch.optim.Adam(model.parameters(), lr=r["lr"], weight_decay=r["weight_decay"])

    def step(xb, yb):
        logits = model(xb)
        return F.cross_entropy(logits, yb), logits

    x, y = _train_arrays(config, data)
    history = _fit(
        model,
        step,
        x,
        y,
        r["float_epochs"],
        r["batch_size"],
        opt,
        rng,
        r["shift_augment"],
        r["hflip"],
        f"float {config.net}",
        progress,
    )
    return model, history


def quantize(config: TrainConfig, float_net: FloatNet, data: Dataset, progress: bool = True) -> tuple[QuantNet, list]:
    """PTQ (calibration only) or QAT (calibration, then fine-tuning with the straight-through estimator)."""
    r = config.resolved()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed + 1)
    x, y = _train_arrays(config, data)
    calib = torch.from_numpy(x[rng.permutation(len(x))[: config.calib_images]])
    qnet = QuantNet(get_net(config.net), config.act_bits, config.weight_bits, config.act_format, config.int_bits)
    qnet.init_from_float(float_net, calib)
    if config.mode == "ptq" or r["qat_epochs"] == 0:
        return qnet.eval(), []
    opt = torch.optim.Adam(qnet.parameters(), lr=r["qat_lr"])

    def step(xb, yb):
        _, logits = qnet(xb)
        return F.cross_entropy(logits, yb), logits

    history = _fit(
        qnet,
        step,
        x,
        y,
        r["qat_epochs"],
        r["batch_size"],
        opt,
        rng,
        r["shift_augment"],
        r["hflip"],
        f"qat {config.net} a{config.act_bits}w{config.weight_bits}",
        progress,
    )
    return qnet, history


def _train_arrays(config: TrainConfig, data: Dataset) -> tuple[np.ndarray, np.ndarray]:
    limit = config.train_limit or len(data.train_y)
    return data.train_x[:limit], data.train_y[:limit]


def set_bounds(export: ModelExport, x: np.ndarray) -> None:
    """Range extraction: each hidden layer's per-channel and per-layer min/max of its integer output
    activations over images x, stored in the export."""
    ranges = IntegerModel(export).output_ranges(x)
    for layer, rng in zip(export.layers, ranges, strict=True):
        if rng is None:
            layer.lo = layer.hi = layer.lo_ch = layer.hi_ch = None
            continue
        layer.lo_ch, layer.hi_ch = rng[0].astype(np.int64), rng[1].astype(np.int64)
        layer.lo, layer.hi = int(layer.lo_ch.min()), int(layer.hi_ch.max())


def _accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(pred == y)) if len(y) else float("nan")


@torch.no_grad()
def float_predict(model: FloatNet, x: np.ndarray, batch: int = 1000) -> np.ndarray:
    return np.concatenate(
        [model(torch.from_numpy(x[i : i + batch])).argmax(1).numpy() for i in range(0, len(x), batch)]
    )


@torch.no_grad()
def fakequant_logits(model: QuantNet, x: np.ndarray, batch: int = 1000) -> np.ndarray:
    """The fake-quant model's integer logits v (float64 holding integers) for images x."""
    return np.concatenate([model(torch.from_numpy(x[i : i + batch]))[0].numpy() for i in range(0, len(x), batch)])
