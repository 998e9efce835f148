"""`quasar campaign` and `quasar replay`: the campaign's command line.

Every option is validated (by CampaignConfig) before any training, build or simulation starts; list
options take comma-separated values or the option repeated (quasar/options.py).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from fault_campaigns.planning.faults import DEFAULT_TARGETS
from models.formats import ACT_FORMAT_HELP, INT_BITS_HELP
from quasar.errors import QuasarError
from quasar.options import list_option, parse_list

log = logging.getLogger(__name__)

TARGETS_OPTION = list_option("--targets", "register kinds", "pe_activation,accumulator",
                             "pe_activation,output_activation")


def campaign(
    net: Annotated[str, typer.Option(help="network: lenet, alexnet or tiny")] = "lenet",
    bits: Annotated[int, typer.Option(help="quantization bit width (2-16) for activations and weights")] = 8,
    act_bits: Annotated[int | None, typer.Option(help="activation bits (default: --bits)")] = None,
    weight_bits: Annotated[int | None, typer.Option(help="weight bits (default: --bits)")] = None,
    rows: Annotated[int, typer.Option(help="array rows (1-64)")] = 8,
    cols: Annotated[int, typer.Option(help="array columns (1-64)")] = 8,
    k_max: Annotated[int, typer.Option(help="operand buffer depth (longest reduction)")] = 1024,
    protection: Annotated[list[str] | None, list_option(
        "--protection", "designs to run, protection specs (none, range, range:zero, range:clamp:acc:channel, ...; "
        "docs/arithmetic.md)", "none,range:zero", "none,range")] = None,
    per_channel_bounds: Annotated[bool, typer.Option(help="one bound pair per output channel")] = False,
    dataset: Annotated[str | None, typer.Option(help="dataset (default: the net's own)")] = None,
    data_dir: Annotated[str | None, typer.Option(help="dataset directory")] = None,
    train_mode: Annotated[str, typer.Option(help="qat or ptq")] = "qat",
    act_format: Annotated[str, typer.Option(help=ACT_FORMAT_HELP)]
    = "calibrated",
    int_bits: Annotated[str, typer.Option(help=INT_BITS_HELP)] = "auto",
    images: Annotated[int, typer.Option(help="test images in the fault space")] = 256,
    golden_images: Annotated[int, typer.Option(help="images whose every tile is checked on RTL first")] = 1,
    fault_model: Annotated[str, typer.Option(help="flip, mbu2, mbu3, stuck0, stuck1")] = "flip",
    targets: Annotated[list[str] | None, TARGETS_OPTION] = None,
    margin: Annotated[float, typer.Option(help="error margin of each per-layer rate, in (0, 1)")] = 0.02,
    confidence: Annotated[float, typer.Option(help="confidence level, in (0, 1)")] = 0.95,
    faults: Annotated[int | None, typer.Option(help="faults per layer (default: Leveugle's formula)")] = None,
    layers: Annotated[list[str] | None, list_option("--layers", "only these layers", "conv1,fc1", "all")] = None,
    seed: Annotated[int, typer.Option(help="seed of every random choice")] = 0,
    workers: Annotated[int | None, typer.Option(help="simulator processes (default: all cores)")] = None,
    executor: Annotated[str, typer.Option(help="local (simulators on this machine) or dask (on a cluster)")]
    = "local",
    scheduler: Annotated[str | None, typer.Option(help="Dask scheduler address tcp://HOST:PORT (--executor dask)")]
    = None,
    runs_dir: Annotated[Path, typer.Option(help="parent of the run directory")] = Path("runs"),
    out: Annotated[Path | None, typer.Option(help="run directory (default: RUNS_DIR/campaign/<name>)")] = None,
    stall_timeout: Annotated[float, typer.Option(help="seconds without progress before a simulator is killed")]
    = 180.0,
    progress: Annotated[bool, typer.Option(help="progress bar")] = True,
    raw_fit_per_mbit: Annotated[float, typer.Option(
        help="raw soft-error rate per Mbit of registers for the SDC FIT (default 1000: IEC 61508-2's 700-1,200 "
             "FIT/Mbit for embedded memories, assumed for flip-flops)")] = 1000.0,
) -> None:
    """Run a fault-injection campaign on the RTL: golden check, then the same faults unprotected and protected."""
    from fault_campaigns.campaign import Campaign
    from fault_campaigns.planning.config import PROTECTIONS, CampaignConfig

    if workers is not None and workers < 1:
        raise QuasarError(f"workers must be at least 1, got {workers!r}")
    if not stall_timeout > 0:
        raise QuasarError(f"stall timeout must be more than 0 seconds, got {stall_timeout!r}")
    cfg = CampaignConfig(
        net=net, bits=bits, act_bits=act_bits, weight_bits=weight_bits, rows=rows, cols=cols, k_max=k_max,
        per_channel_bounds=per_channel_bounds, protections=parse_list("--protection", protection) or PROTECTIONS,
        dataset=dataset, data_dir=data_dir, train_mode=train_mode, images=images, golden_images=golden_images,
        fault_model=fault_model, targets=parse_list("--targets", targets) or DEFAULT_TARGETS, margin=margin,
        confidence=confidence, faults=faults, layers=parse_list("--layers", layers), seed=seed,
        act_format=act_format, int_bits=None if int_bits == "auto" else int_bits,
    )
    run_dir = out or cfg.default_dir(runs_dir)
    campaign = Campaign(cfg, run_dir, workers=workers, progress=progress, stall_timeout=stall_timeout,
                        executor=executor, scheduler=scheduler, raw_fit_per_mbit=raw_fit_per_mbit)
    log.info("campaign %s -> %s", cfg.campaign_id, run_dir)  # after every option check: an error is one line
    summary = campaign.run()
    _print_headline(summary, run_dir)


def _print_headline(summary: dict, run_dir: Path) -> None:
    from fault_campaigns.analysis.fit import fit_text
    from fault_campaigns.analysis.report import _fmt, relative_text, session_text

    for p, d in summary["designs"].items():
        # masked + corrupted + hang + crash = 100% (SDC and critical are part of corrupted)
        r, counts = d["rates"], d["counts"]
        n = r["faults"]
        stuck = "".join(f"  {o} {100 * counts[o] / n:.2f}% ({counts[o]})" for o in ("hang", "crash") if counts.get(o))
        typer.echo(f"{p:>5}: {n} faults  masked {_fmt(r['masked'])}  corrupted {_fmt(r['corrupted'])} "
                   f"(SDC {_fmt(r['sdc'])}, critical {_fmt(r['critical'])}){stuck}")
        m, f = d.get("faults"), d.get("sdc_fit")
        if m:
            typer.echo(f"       SDC population-weighted {_fmt(d['stratified']['sdc'])}  over live faults "
                       f"{_fmt(m['sdc_live'])}  idle {_fmt(m['idle'])}  SDC-5 {_fmt(m['sdc5'])}")
            typer.echo(f"       accuracy under single faults {_fmt(m['accuracy_under_faults'])}  SDC FIT "
                       f"{fit_text(f)} ({f['raw_fit_per_mbit']:g} FIT/Mbit, {f['bits']} bits, "
                       f"{100 * f['coverage']['share']:.1f}% of the registers)" if f and f.get("fit") is not None
                       else f"       accuracy under single faults {_fmt(m['accuracy_under_faults'])}")
    eff = summary.get("protection_effect")
    if eff:
        for name, label in (("sdc", "SDC"), ("corrupted", "corrupted layer output")):
            e = eff[name]
            change = f"{100 * e['unprotected']:.2f}% -> {100 * e['protected']:.2f}%"
            typer.echo(f"range protection, {label}: {change}, relative reduction {relative_text(e)}")
    typer.echo(f"{session_text(summary)}; report: {run_dir / 'report.md'}")


def replay(
    run: Annotated[Path, typer.Option(help="campaign run directory")],
    fault: Annotated[int | None, typer.Option(help="fault id (see results.sqlite)")] = None,
    protection: Annotated[str, typer.Option(help="design: a protection spec the campaign ran (none, range, ...)")]
    = "none",
    waves: Annotated[bool, typer.Option(help="write a waveform (VCD: DIR/replay/fault<ID>-<design>.vcd)")] = True,
    rate: Annotated[float | None, typer.Option(help="fault-rate run: the rate of the row to replay")] = None,
    image: Annotated[int, typer.Option(help="fault-rate run: the image (position in the campaign's list)")] = 0,
    trial: Annotated[int, typer.Option(help="fault-rate run: the trial")] = 0,
) -> None:
    """Rerun one fault of a campaign alone on the RTL (with a waveform) and compare with the stored result;
    with --rate/--image/--trial, one inference of a fault-rate run (`quasar rates`) instead."""
    if rate is not None:
        from fault_campaigns.execution.rate_replay import replay_inference

        typer.echo(json.dumps(replay_inference(run, rate, image, trial, protection, waves), indent=2, default=str))
        return
    if fault is None:
        raise QuasarError("give --fault ID (a single-fault campaign) or --rate/--image/--trial (a fault-rate run)")
    from fault_campaigns.execution.replay import replay_fault

    result = replay_fault(run, fault, protection, waves)
    typer.echo(json.dumps(result, indent=2))


def register(app: typer.Typer) -> None:
    app.command("campaign")(campaign)
    app.command("replay")(replay)
