"""Quantized layers: a float network, its fake-quant twin whose forward *is* the integer arithmetic, calibration.

Scheme (docs/models.md): activations unsigned A-bit codes with one real scale per layer (s_in, s_out);
weights symmetric signed W-bit codes with one scale per output channel (one per tensor for the last
layer, so the raw integer logits rank the classes like the real ones); bias at scale s_in * s_w in the
accumulator width; requantization by the integer multiplier M and shift S of docs/arithmetic.md with
M / 2^S ~= s_in * s_w / s_out.

`QuantNet` carries integer codes (float64 tensors holding integers, exact below 2^53) from layer to
layer. Its forward value is computed with the integer requantization itself (int64 multiply, round half
up, arithmetic shift), so it equals the integer reference model bit for bit; gradients use the
straight-through estimator of the same expression written with real scales (LSQ), so weights, biases and
both kinds of scale are trained. This module never reads data files or the cache.

Format `pow2` (docs/arithmetic.md, "Activation number formats"): every scale is a power of two,
activations are ap_ufixed<A, I> with I integer bits per layer (fixed at calibration: the fewest that
hold the data maximum, or one given value), weights have Fw fractional bits per output channel (MSE
choice among powers of two at calibration), so M = 1 and S = F_in + Fw - F_out. The fractional bits are
buffers, not trained: QAT trains the weights and biases through the same straight-through estimator.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.export import LayerExport, ModelExport
from models.nets import NetSpec
from quasar.arithmetic import ACT_FORMATS, M_BITS, MAX_SHIFT, acc_bits
from quasar.errors import check_choice, check_range

DTYPE = torch.float64
CALIB_SAMPLE = 1_000_000  # activation values searched per layer for the clipping threshold
_M_TOP = 1 << M_BITS  # M < 2^16
_M_NORM = 1 << (M_BITS - 1)  # normalised M >= 2^15


def multiplier_shift(m: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """Integer (M, S) with M / 2^S ~= m > 0: M = round_half_up(m * 2^S) normalised into [2^15, 2^16).

    When m is so small that S would exceed 63, S = 63 and M < 2^15 (possibly 0); when m >= 2^16, S = 0
    and M saturates at 2^16 - 1. Both are far outside what a trained network produces.
    """
    m = np.atleast_1d(np.asarray(m, dtype=np.float64))
    if not np.all(np.isfinite(m)) or np.any(m <= 0):
        raise ValueError(f"requantization scales must be finite and positive, got {m}")
    _, exp = np.frexp(m)  # m = f * 2^exp, f in [0.5, 1)  =>  m * 2^(16 - exp) in [2^15, 2^16)
    shift = (M_BITS - exp).astype(np.int64)
    shift = np.clip(shift, 0, MAX_SHIFT)
    mult = np.floor(np.ldexp(m, shift) + 0.5).astype(np.int64)
    carry = (mult >= _M_TOP) & (shift > 0)  # rounding reached 2^16: one bit less of shift
    shift = np.where(carry, shift - 1, shift)
    mult = np.where(carry, np.floor(np.ldexp(m, shift) + 0.5).astype(np.int64), mult)
    return np.minimum(mult, _M_TOP - 1), shift


def requantize_torch(v: torch.Tensor, mult: torch.Tensor, shift: torch.Tensor, act_bits: int) -> torch.Tensor:
    """docs/arithmetic.md's requantization on int64 tensors; mult/shift broadcast over dim 1 (channels)."""
    view = (1, -1) + (1,) * (v.dim() - 2)
    mult, shift = mult.view(view), shift.view(view)
    half = torch.where(shift > 0, torch.ones_like(shift) << (shift - 1).clamp(min=0), torch.zeros_like(shift))
    return torch.clamp((v * mult + half) >> shift, 0, (1 << act_bits) - 1)


def round_half_up(x: torch.Tensor) -> torch.Tensor:
    return torch.floor(x + 0.5)


def ste_round(x: torch.Tensor) -> torch.Tensor:
    """round_half_up in the forward pass, identity in the backward pass (straight-through estimator)."""
    return x + (round_half_up(x) - x).detach()


# ------------------------------------------------------------------------------------------ float


class FloatNet(nn.Module):
    """The plain float network of a NetSpec: conv/fc, ReLU, max-pool, flatten; no ReLU on the logits."""

    def __init__(self, spec: NetSpec) -> None:
        super().__init__()
        self.spec = spec
        self.geometry = spec.geometry()
        mods = []
        for g in self.geometry:
            if g.kind == "conv":
                mods.append(nn.Conv2d(g.in_channels, g.out_channels, g.kernel, g.stride, g.padding))
            else:
                mods.append(nn.Linear(g.in_channels, g.out_channels))
        self.layers = nn.ModuleList(mods)

    def forward(self, x: torch.Tensor, keep: bool = False):
        """Logits; with keep=True also every hidden layer's post-ReLU output (before pooling)."""
        kept = []
        for g, mod in zip(self.geometry, self.layers, strict=True):
            x = mod(x)
            if g.is_last:
                break
            x = F.relu(x)
            if keep:
                kept.append(x)
            if g.pool > 1:
                x = F.max_pool2d(x, g.pool)
            if g.flatten:
                x = x.flatten(1)
        return (x, kept) if keep else x


# ------------------------------------------------------------------------------------ calibration


def mse_clip_rows(rows: torch.Tensor, levels: int, signed: bool, grid: int = 64) -> torch.Tensor:
    """Per row, the clipping threshold c that minimises the squared quantization error of the row's values on
    a uniform grid of `levels` steps per sign (step c / levels). Candidates: fractions 1/grid .. 1 of the
    row's max |value|; the first best wins on a tie. A row of zeros gets c = 1."""
    v = rows.detach().to(DTYPE).reshape(rows.shape[0], -1)
    top = v.abs().amax(dim=1)
    top = torch.where(top > 0, top, torch.ones_like(top))
    fracs = torch.linspace(1.0 / grid, 1.0, grid, dtype=DTYPE)
    lo = -levels if signed else 0
    chunk = max(1, 4_000_000 // max(1, v.numel()))
    errs = []
    for start in range(0, grid, chunk):
        steps = (fracs[start : start + chunk, None] * top[None, :] / levels)[:, :, None]  # (g, R, 1)
        q = torch.clamp(round_half_up(v[None] / steps), lo, levels) * steps
        errs.append(((q - v[None]) ** 2).sum(dim=2))
    best = torch.cat(errs).argmin(dim=0)  # (R,)
    return fracs[best] * top


def mse_clip(values: torch.Tensor, levels: int, signed: bool, grid: int = 64) -> float:
    """`mse_clip_rows` for one set of values."""
    return float(mse_clip_rows(values.reshape(1, -1), levels, signed, grid)[0])


POW2_CANDIDATES = 7  # fractional bits tried per weight row: no clipping, then 1..6 bits finer (down to 1/64)


def pow2_frac_rows(rows: torch.Tensor, levels: int) -> torch.Tensor:
    """Per row, the fractional bits F (step 2^-F) minimising the squared error of the row's symmetric
    quantization to -levels..levels. Candidates: F0 (the largest step that clips nothing,
    F0 = floor(log2(levels / max|w|))) and F0 + 1 .. F0 + 6 (finer steps, clipping the largest values);
    the first best wins on a tie. A row of zeros gets F0 = 0. Returns float64 holding integers."""
    v = rows.detach().to(DTYPE).reshape(rows.shape[0], -1)
    top = v.abs().amax(dim=1)
    f0 = torch.where(top > 0, torch.floor(torch.log2(levels / torch.where(top > 0, top, torch.ones_like(top)))), 0.0)
    # log2 can round across an integer: make sure F0 clips nothing and F0 + 1 would
    f0 = torch.where(top * torch.pow(2.0, f0) > levels, f0 - 1, f0)
    f0 = torch.where((top > 0) & (top * torch.pow(2.0, f0 + 1) <= levels), f0 + 1, f0)
    errs = []
    for extra in range(POW2_CANDIDATES):
        step = torch.pow(2.0, -(f0 + extra))[:, None]
        q = torch.clamp(round_half_up(v / step), -levels, levels) * step
        errs.append(((q - v) ** 2).sum(dim=1))
    return f0 + torch.stack(errs).argmin(dim=0).to(DTYPE)


def auto_int_bits(data_max: float, act_bits: int) -> int:
    """The fewest integer bits I in 0..A whose ap_ufixed<A, I> top value (2^A - 1) * 2^(I - A) holds
    data_max (A when none does)."""
    top = (1 << act_bits) - 1
    for bits in range(act_bits + 1):
        if data_max <= top * 2.0 ** (bits - act_bits):
            return bits
    return act_bits


# ------------------------------------------------------------------------------------- fake-quant


class QuantNet(nn.Module):
    """Fake-quant network whose forward reproduces docs/arithmetic.md exactly.

    Parameters: real weights/biases (float64), log weight scales (per output channel; one for the last
    layer) and log output-activation scales (one per hidden layer). The input scale is fixed at
    1 / (2^A - 1) by the contract's input quantization.
    """

    def __init__(
        self,
        spec: NetSpec,
        act_bits: int,
        weight_bits: int,
        act_format: str = "calibrated",
        int_bits: int | None = None,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.geometry = spec.geometry()
        self.act_bits = act_bits
        self.weight_bits = weight_bits
        self.act_format = check_choice("act_format", act_format, ACT_FORMATS)
        self.pow2 = self.act_format == "pow2"
        if int_bits is not None:
            if not self.pow2:
                raise ValueError("int_bits applies to the pow2 format only")
            check_range("int_bits", int_bits, 0, act_bits)
        self.int_bits = int_bits  # None: auto (per layer, from the calibration data)
        self.act_max = (1 << act_bits) - 1
        self.w_max = (1 << (weight_bits - 1)) - 1
        acc = acc_bits(act_bits, weight_bits, spec.max_reduction)
        self.bias_lo, self.bias_hi = -(1 << (acc - 1)), (1 << (acc - 1)) - 1
        self.weight = nn.ParameterList()
        self.bias = nn.ParameterList()
        self.log_sw = nn.ParameterList()
        self.log_sout = nn.ParameterList()
        for g in self.geometry:
            shape = (
                (g.out_channels, g.in_channels, g.kernel, g.kernel)
                if g.kind == "conv"
                else (g.out_channels, g.in_channels)
            )
            self.weight.append(nn.Parameter(torch.zeros(shape, dtype=DTYPE)))
            self.bias.append(nn.Parameter(torch.zeros(g.out_channels, dtype=DTYPE)))
            n_sw = 1 if g.is_last else g.out_channels
            if self.pow2:  # fractional bits (integers in float64), fixed after calibration
                self.register_buffer(f"frac_w{len(self.weight) - 1}", torch.zeros(n_sw, dtype=DTYPE))
            else:
                self.log_sw.append(nn.Parameter(torch.zeros(n_sw, dtype=DTYPE)))
                if not g.is_last:
                    self.log_sout.append(nn.Parameter(torch.zeros((), dtype=DTYPE)))
        if self.pow2:  # F_l of every hidden layer's output
            self.register_buffer("frac_act", torch.zeros(len(self.geometry) - 1, dtype=DTYPE))

    # ---------------------------------------------------------------------------------- set-up

    @torch.no_grad()
    def init_from_float(self, float_net: FloatNet, calib_x: torch.Tensor) -> None:
        """Post-training quantization: copy the float weights, choose MSE-optimal weight scales per
        channel and output-activation scales from the float activations on calibration images."""
        if self.pow2:
            self._init_pow2(float_net, calib_x)
            return
        for i, mod in enumerate(float_net.layers):
            self.weight[i].copy_(mod.weight.to(DTYPE))
            self.bias[i].copy_(mod.bias.to(DTYPE))
            w = mod.weight.detach().to(DTYPE).reshape(mod.weight.shape[0], -1)
            rows = w.reshape(1, -1) if self.geometry[i].is_last else w  # one scale for the logits layer
            clips = mse_clip_rows(rows, self.w_max, signed=True)
            self.log_sw[i].copy_(torch.log(clips / self.w_max))
        _, kept = float_net(calib_x.to(torch.float32), keep=True)
        for i, act in enumerate(kept):
            sample = act.flatten()
            if sample.numel() > CALIB_SAMPLE:  # a seeded subsample keeps the search fast
                gen = torch.Generator().manual_seed(i)
                sample = sample[torch.randint(sample.numel(), (CALIB_SAMPLE,), generator=gen)]
            self.log_sout[i].copy_(torch.log(torch.tensor(mse_clip(sample, self.act_max, signed=False) / self.act_max)))

    @torch.no_grad()
    def _init_pow2(self, float_net: FloatNet, calib_x: torch.Tensor) -> None:
        """pow2 calibration: integer bits per hidden layer from the float activations' maximum on the
        calibration images (or the fixed int_bits), weight fractional bits by `pow2_frac_rows`, raised
        where needed so that 0 <= S <= 63 (docs/arithmetic.md)."""
        _, kept = float_net(calib_x.to(torch.float32), keep=True)
        for i, act in enumerate(kept):
            bits = self.int_bits if self.int_bits is not None else auto_int_bits(float(act.max()), self.act_bits)
            self.frac_act[i] = self.act_bits - bits
        for i, mod in enumerate(float_net.layers):
            self.weight[i].copy_(mod.weight.to(DTYPE))
            self.bias[i].copy_(mod.bias.to(DTYPE))
            w = mod.weight.detach().to(DTYPE).reshape(mod.weight.shape[0], -1)
            frac = pow2_frac_rows(w.reshape(1, -1) if self.geometry[i].is_last else w, self.w_max)
            f_in = self._frac_in(i)
            if not self.geometry[i].is_last:
                f_out = float(self.frac_act[i])
                frac = torch.clamp(frac, f_out - f_in, MAX_SHIFT - f_in + f_out)
            getattr(self, f"frac_w{i}").copy_(frac)

    def _frac_in(self, i: int) -> float:
        """pow2: fractional bits of layer i's input (A for the image)."""
        return float(self.act_bits) if i == 0 else float(self.frac_act[i - 1])

    # -------------------------------------------------------------------------------- the layers

    def _scales(self, i: int, s_in: torch.Tensor):
        sw = torch.pow(2.0, -getattr(self, f"frac_w{i}")) if self.pow2 else torch.exp(self.log_sw[i])
        return sw, s_in * sw

    def _input_scale(self) -> torch.Tensor:
        return torch.tensor(2.0**-self.act_bits if self.pow2 else 1.0 / self.act_max, dtype=DTYPE)

    def _output_scale(self, i: int) -> torch.Tensor:
        return torch.pow(2.0, -self.frac_act[i]) if self.pow2 else torch.exp(self.log_sout[i])

    def _mult_shift(self, i: int, acc_scale: torch.Tensor, s_out: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Layer i's integer (M, S) per output channel (or one pair broadcast over the channels)."""
        if self.pow2:
            frac = getattr(self, f"frac_w{i}").numpy()
            shift = np.rint(self._frac_in(i) + frac - float(self.frac_act[i])).astype(np.int64)
            return np.ones_like(shift), shift
        return multiplier_shift((acc_scale / s_out).detach().cpu().numpy())

    def _weight_codes(self, i: int, sw: torch.Tensor) -> torch.Tensor:
        view = (-1,) + (1,) * (self.weight[i].dim() - 1)
        return torch.clamp(ste_round(self.weight[i] / sw.view(view)), -self.w_max, self.w_max)

    def _bias_codes(self, i: int, acc_scale: torch.Tensor) -> torch.Tensor:
        return torch.clamp(ste_round(self.bias[i] / acc_scale.detach()), self.bias_lo, self.bias_hi)

    def input_codes(self, x: torch.Tensor) -> torch.Tensor:
        if self.pow2:
            return torch.clamp(round_half_up(x.to(DTYPE) * (1 << self.act_bits)), max=self.act_max)
        return round_half_up(x.to(DTYPE) * self.act_max)

    def forward(self, x: torch.Tensor, keep: bool = False):
        """(codes of the logits v, real logits); with keep=True also every hidden layer's output codes
        (B, N, H, W) or (B, N), before pooling. x: images in [0, 1]."""
        a = self.input_codes(x)
        s_in = self._input_scale()
        kept = []
        for i, g in enumerate(self.geometry):
            sw, acc_scale = self._scales(i, s_in)
            w = self._weight_codes(i, sw)
            b = self._bias_codes(i, acc_scale)
            if g.kind == "conv":
                v = F.conv2d(a, w, b, stride=g.stride, padding=g.padding)
            else:
                v = F.linear(a, w, b)
            if g.is_last:
                return (v, v * acc_scale, kept) if keep else (v, v * acc_scale)
            s_out = self._output_scale(i)
            a = self._requantize(i, v, acc_scale, s_out)
            if keep:
                kept.append(a.detach())
            if g.pool > 1:
                a = F.max_pool2d(a, g.pool)
            if g.flatten:
                a = a.flatten(1)
            s_in = s_out
        raise AssertionError("unreachable: the last layer returns")

    def _requantize(self, i: int, v: torch.Tensor, acc_scale: torch.Tensor, s_out: torch.Tensor) -> torch.Tensor:
        m = acc_scale / s_out  # real multiplier per channel, differentiable
        mult, shift = self._mult_shift(i, acc_scale, s_out)
        exact = requantize_torch(
            v.detach().round().to(torch.int64), torch.from_numpy(mult), torch.from_numpy(shift), self.act_bits
        ).to(DTYPE)
        view = (1, -1) + (1,) * (v.dim() - 2)
        surrogate = torch.clamp(v * m.view(view), 0, self.act_max)
        return surrogate + (exact - surrogate).detach()

    # ------------------------------------------------------------------------------------- export

    @torch.no_grad()
    def export(self, dataset: str, config: dict | None = None) -> ModelExport:
        """Integer weights, biases, M and S, exactly as the forward pass uses them (bounds not yet set)."""
        layers = []
        s_in = self._input_scale()
        for i, g in enumerate(self.geometry):
            sw, acc_scale = self._scales(i, s_in)
            w = self._weight_codes(i, sw).reshape(g.out_channels, -1).T  # (K, N), im2col order
            b = self._bias_codes(i, acc_scale)
            n = g.out_channels
            if g.is_last:
                mult, shift, s_out = np.ones(n, np.int64), np.zeros(n, np.int64), None
            else:
                s_out = self._output_scale(i)
                mult, shift = self._mult_shift(i, acc_scale, s_out)
                mult, shift = np.broadcast_to(mult, (n,)).copy(), np.broadcast_to(shift, (n,)).copy()
            layers.append(
                LayerExport.from_geometry(
                    g,
                    weight=np.ascontiguousarray(w.round().to(torch.int64).numpy()),
                    bias=b.round().to(torch.int64).numpy(),
                    mult=mult.astype(np.int64),
                    shift=shift.astype(np.int64),
                    input_scale=float(s_in),
                    weight_scale=np.broadcast_to(sw.numpy(), (n,)).copy(),
                    output_scale=None if s_out is None else float(s_out),
                    int_bits=None if s_out is None or not self.pow2 else self.act_bits - int(self.frac_act[i]),
                )
            )
            if s_out is not None:
                s_in = s_out
        return ModelExport(
            net=self.spec.name,
            act_bits=self.act_bits,
            weight_bits=self.weight_bits,
            dataset=dataset,
            layers=layers,
            input_shape=self.spec.input_shape,
            num_classes=self.spec.num_classes,
            max_reduction=self.spec.max_reduction,
            input_levels=(1 << self.act_bits) if self.pow2 else self.act_max,
            config=dict(config or {}),
            act_format=self.act_format,
        )
