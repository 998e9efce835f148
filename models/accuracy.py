"""The accuracy table: QAT and PTQ accuracy of one net at several widths and activation formats.

Trains (or reuses from the cache) one model per (width, format, mode) through `models.train.get_or_train`
and lays the metrics side by side. Library code: it never prints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from models.formats import check_format
from models.nets import get_net
from models.train import BITS_RANGE, MODES, TrainConfig, get_or_train
from quasar.arithmetic import ACT_FORMATS
from quasar.errors import ConfigError, check_choice, check_range


def parse_bits_list(values: list[str]) -> list[int]:
    """'2', '3,4' ... -> [2, 3, 4], each checked to be in 2..16; duplicates dropped, order kept."""
    out: list[int] = []
    for value in values:
        for part in str(value).split(","):
            if part.strip():
                bits = check_range("--bits", part.strip(), *BITS_RANGE)
                if bits not in out:
                    out.append(bits)
    return out


@dataclass
class AccuracyTable:
    net: str
    dataset: str
    rows: list[dict]
    modes: list[str]
    formats: list[str] = field(default_factory=lambda: ["calibrated"])

    def columns(self) -> list[tuple[str, str]]:
        """(row key prefix, header prefix) per (format, mode): 'qat' / 'QAT' for calibrated, 'pow2_qat' /
        'pow2 QAT' for pow2 (headers name the calibrated format too when both are shown)."""
        out = []
        for fmt in self.formats:
            for mode in self.modes:
                key = mode if fmt == "calibrated" else f"{fmt}_{mode}"
                label = mode.upper() if self.formats == ["calibrated"] else f"{fmt} {mode.upper()}"
                out.append((key, label))
        return out

    def to_markdown(self) -> str:
        head = ["bits (A = W)", "float %"]
        for key, label in self.columns():
            head += [f"{label} integer %", f"{label} fake-quant %", f"{label} agreement %", f"{label} time s"]
            if key.startswith("pow2"):
                head.append(f"{label} int bits")
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for row in self.rows:
            cells = [str(row["bits"]), f"{row['float_accuracy']:.2f}"]
            for key, _ in self.columns():
                cells += [
                    f"{row[f'{key}_integer_accuracy']:.2f}",
                    f"{row[f'{key}_fakequant_accuracy']:.2f}",
                    f"{row[f'{key}_agreement']:.2f}",
                    f"{row[f'{key}_time_s']:.1f}",
                ]
                if key.startswith("pow2"):
                    cells.append(row[f"{key}_int_bits"])
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)


def accuracy_table(
    net: str,
    bits: list[int],
    modes: list[str] = MODES,
    dataset: str | None = None,
    data_dir: str | None = None,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    formats: list[str] = ("calibrated",),
    int_bits: int | None = None,
) -> AccuracyTable:
    """QAT and PTQ at each width (activations = weights = bits) and each format; accuracies in percent.
    pow2 columns also give the integer bits of every hidden layer ('I1/I2/...')."""
    if not modes:
        raise ConfigError(f"modes must name at least one of {', '.join(MODES)}")
    for mode in modes:
        check_choice("mode", mode, MODES)
    if not formats:
        raise ConfigError(f"formats must name at least one of {', '.join(ACT_FORMATS)}")
    for fmt in formats:
        check_choice("act format", fmt, ACT_FORMATS)
    if int_bits is not None:
        if "pow2" not in formats:
            raise ConfigError(f"int bits ({int_bits!r}) only apply to act format 'pow2', not {', '.join(formats)}")
        for b in bits:  # every width must hold the fixed integer bits: one error before any training
            check_format("pow2", int_bits, b)
    table = AccuracyTable(net=net, dataset="", rows=[], modes=list(modes), formats=list(formats))
    for b in bits:
        row: dict = {"bits": b}
        for fmt in formats:
            for mode in modes:
                key = mode if fmt == "calibrated" else f"{fmt}_{mode}"
                cfg = TrainConfig(
                    net=net, act_bits=b, weight_bits=b, mode=mode, dataset=dataset, data_dir=data_dir, seed=seed,
                    act_format=fmt, int_bits=int_bits if fmt == "pow2" else None,
                )  # fmt: skip
                table.dataset = cfg.resolved_dataset
                export, m = get_or_train(cfg, cache_dir=cache_dir, progress=progress)
                row["float_accuracy"] = 100 * m.float_accuracy
                row[f"{key}_integer_accuracy"] = 100 * m.integer_accuracy
                row[f"{key}_fakequant_accuracy"] = 100 * m.fakequant_accuracy
                row[f"{key}_agreement"] = 100 * m.agreement
                row[f"{key}_time_s"] = m.quant_train_s
                row[f"{key}_float_train_s"] = m.float_train_s
                if fmt == "pow2":
                    row[f"{key}_int_bits"] = "/".join(str(layer.int_bits) for layer in export.layers[:-1])
        table.rows.append(row)
    table.dataset = table.dataset or get_net(net).default_dataset
    return table
