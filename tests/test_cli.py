"""The `quasar` front door: one list form for every list option, one-line errors with useful hints, and
an interrupt that ends with one line and exit status 130 (docs: README "Command line")."""

from __future__ import annotations

import pytest
import typer

from quasar.cli import app, main
from quasar.errors import ConfigError, Interrupted
from quasar.options import FORM, LIST_METAVAR, parse_int_list, parse_list


class Captured(Exception):
    """Stops a command at its library call, with what the command passed."""


def _capture(monkeypatch, target: str):
    module, name = target.rsplit(".", 1)

    def fake(*args, **kwargs):
        raise Captured(args, kwargs)

    monkeypatch.setattr(f"{module}.{name}", fake)


def _run(argv: list[str], capsys) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(argv)
    return rc, capsys.readouterr().err


# (command line with two list values given in both forms, library entry point, how to read what it got)
ACCEPTED = [
    (["campaign", "--net", "tiny", "--protection", "none", "--protection", "range", "--layers", "conv1,fc1",
      "--targets", "pe_activation", "--targets", "accumulator"], "fault_campaigns.campaign.Campaign",
     lambda a, k: (a[0].protections, a[0].layers, a[0].targets),
     (("none", "range"), ("conv1", "fc1"), ("pe_activation", "accumulator"))),
    (["rates", "--net", "tiny", "--protection", "none", "--protection", "range", "--rates", "1e-6,1e-5",
      "--targets", "accumulator"], "fault_campaigns.rate_campaign.RateCampaign",
     lambda a, k: (a[0].protections, a[0].rates, a[0].targets), (("none", "range"), (1e-6, 1e-5), ("accumulator",))),
    (["sweep", "--net", "tiny", "--bits", "2,4", "--bits", "8", "--synth-targets", "xc7", "--synth-targets", "pnr"],
     "fault_campaigns.sweep.runner.Sweep", lambda a, k: (a[0].bits, a[0].synth_targets), ((2, 4, 8), ("xc7", "pnr"))),
    (["accuracy-table", "--bits", "3", "--bits", "2,8", "--modes", "ptq", "--formats", "pow2"],
     "models.accuracy.accuracy_table", lambda a, k: (a[1], k["modes"], k["formats"]), ([3, 2, 8], ["ptq"], ["pow2"])),
    (["synth-formats", "--bits", "4", "--bits", "8", "--targets", "xc7,pnr"],
     "hdl_gen.synth.formats.requant_comparison",
     lambda a, k: (k["bits"], k["targets"]), ([4, 8], "xc7,pnr")),
    (["synth", "--targets", "xc7", "--targets", "ecp5"], "hdl_gen.synth.synthesize",
     lambda a, k: tuple(k["targets"]), ("xc7", "ecp5")),
    (["synth-overhead", "--bits", "4", "--bits", "8,16", "--targets", "xc7,pnr"], "hdl_gen.synth.protection_overhead",
     lambda a, k: (k["bits"], tuple(k["targets"])), ([4, 8, 16], ("xc7", "pnr"))),
    (["synth-all", "--bits", "2,3", "--protections", "range", "--targets", "pnr"], "hdl_gen.synth.synth_grid",
     lambda a, k: (k["bits"], k["protections"], tuple(k["targets"])), ([2, 3], ["range"], ("pnr",))),
    (["synth-fmax", "--bits", "8", "--bits", "4", "--protections", "none"], "hdl_gen.synth.fmax_modes",
     lambda a, k: (k["bits"], k["protections"]), ([8, 4], ["none"])),
    (["paper", "--net", "tiny", "--int-bits", "4", "--bits", "8", "--bits", "6", "--protection", "none",
      "--protection", "range", "--targets", "pe_activation,output_activation"], "fault_campaigns.paper.run.run_paper",
     lambda a, k: (a[0].bits, a[0].protections, a[0].targets),
     ((6, 8), ("none", "range"), ("pe_activation", "output_activation"))),
]


ENTRY = {argv[0]: target for argv, target, _, _ in ACCEPTED}


@pytest.mark.parametrize(("argv", "target", "read", "want"), ACCEPTED, ids=[a[0][0] for a in ACCEPTED])
def test_every_list_option_takes_commas_and_repeats(argv, target, read, want, monkeypatch, capsys, tmp_path):
    _capture(monkeypatch, target)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Captured) as got:
        main(argv)
    assert read(*got.value.args) == want


def _list_options():
    for name, cmd in typer.main.get_command(app).commands.items():
        for p in cmd.params:
            if getattr(p, "multiple", False):
                yield name, p


LIST_OPTIONS = [(name, p.opts[0]) for name, p in _list_options()]


def test_the_list_options_are_all_known():
    """Every list option of every command is in this file's tables (a new one must be added here)."""
    assert set(LIST_OPTIONS) == {
        ("campaign", "--protection"), ("campaign", "--targets"), ("campaign", "--layers"),
        ("sweep", "--bits"), ("sweep", "--targets"), ("sweep", "--synth-targets"),
        ("sweep", "--act-format"), ("sweep", "--protection"), ("sweep", "--rates"),
        ("rates", "--protection"), ("rates", "--rates"), ("rates", "--targets"),
        ("accuracy-table", "--bits"), ("accuracy-table", "--modes"), ("accuracy-table", "--formats"),
        ("synth-formats", "--bits"), ("synth-formats", "--targets"),
        ("synth", "--targets"), ("synth", "--seeds"), ("synth-all", "--seeds"),
        ("synth-overhead", "--bits"), ("synth-overhead", "--targets"),
        ("synth-all", "--bits"), ("synth-all", "--protections"), ("synth-all", "--targets"),
        ("synth-fmax", "--bits"), ("synth-fmax", "--protections"),
        ("paper", "--bits"), ("paper", "--protection"), ("paper", "--targets"),
    }


@pytest.mark.parametrize(("command", "flag"), LIST_OPTIONS, ids=[f"{c}{f}" for c, f in LIST_OPTIONS])
def test_list_option_help_shows_the_form(command, flag):
    param = next(p for name, p in _list_options() if name == command and p.opts[0] == flag)
    assert FORM in param.help and f"e.g. {flag} " in param.help and param.metavar == LIST_METAVAR


def _value(command: str, flag: str) -> str:
    return {"--bits": "4", "--protection": "range", "--protections": "range", "--modes": "qat", "--layers": "fc1",
            "--synth-targets": "pnr", "--formats": "pow2",
            "--act-format": "pow2", "--seeds": "2",
            "--rates": "1e-5"}.get(flag, "xc7" if command.startswith("synth") else "accumulator")


@pytest.mark.parametrize(("command", "flag"), LIST_OPTIONS, ids=[f"{c}{f}" for c, f in LIST_OPTIONS])
@pytest.mark.parametrize(("form", "message"), [
    ("twice", "lists {v} twice; give each value once"),
    ("empty", "has an empty item"),
    ("spaces", "holds spaces; separate values with commas"),
    ("space-separated", "unexpected extra argument"),
])
def test_bad_list_forms_are_one_clear_line(command, flag, form, message, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # nothing may be written, but if it were, not into the checkout
    _capture(monkeypatch, ENTRY[command])  # a form wrongly accepted ends here, not in a real run
    v = _value(command, flag)
    extra = {"twice": [flag, v, flag, v], "empty": [flag, f"{v},,{v}"], "spaces": [flag, f"{v} {v}"],
             "space-separated": [flag, v, v]}[form]
    rc, err = _run([command, *extra], capsys)
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert rc == 2 and len(lines) == 1, err
    assert message.format(v=repr(v)) in lines[0], err
    assert flag in lines[0] or form == "space-separated"
    if form == "space-separated":
        assert "comma-separated values or the option repeated, e.g. --bits 2,4" in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_parse_list_keeps_order_and_names_bad_items():
    assert parse_list("--x", None) is None
    assert parse_list("--x", ["b, a", "c"]) == ("b", "a", "c")
    assert parse_int_list("--bits", ["8,2", "16"], 2, 16) == (8, 2, 16)
    with pytest.raises(ConfigError, match=r"--bits lists 8 twice"):
        parse_int_list("--bits", ["8", "08"], 2, 16)
    with pytest.raises(ConfigError, match=r"--bits must be in 2..16, got 17"):
        parse_int_list("--bits", ["2,17"], 2, 16)
    with pytest.raises(ConfigError, match=r"--p must be one of none, range; got 'both'"):
        parse_list("--p", ["none,both"], ("none", "range"))
    with pytest.raises(ConfigError, match=r"--x was given without a value"):
        parse_list("--x", [])


def test_unknown_option_suggests_only_close_names(capsys):
    rc, err = _run(["campaign", "--bogus-opt", "1"], capsys)
    assert rc == 2 and err.strip() == "error: no such option --bogus-opt (see `quasar campaign --help`)", err
    rc, err = _run(["campaign", "--seeds", "1"], capsys)
    assert rc == 2 and "did you mean --seed?" in err and "Possible options" not in err, err


def test_interrupt_in_a_command_exits_130_with_one_line(monkeypatch, capsys, tmp_path):
    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("hdl_gen.rtl.generate", ctrl_c)
    rc, err = _run(["gen-rtl", "--out", str(tmp_path / "rtl")], capsys)
    assert rc == 130 and err.strip() == "interrupted", err


def test_interrupted_with_a_message_exits_130(monkeypatch, capsys, tmp_path):
    def stop(*args, **kwargs):
        raise Interrupted("3 of 9 runs stored; rerun the same command to resume")

    monkeypatch.setattr("hdl_gen.rtl.generate", stop)
    rc, err = _run(["gen-rtl", "--out", str(tmp_path / "rtl")], capsys)
    assert rc == 130 and err.strip() == "interrupted: 3 of 9 runs stored; rerun the same command to resume", err


def test_help_texts_say_what_the_commands_do(capsys):
    """replay writes VCD (not FST); the bench's clock choices are the ones that exist, each explained."""
    import subprocess
    import sys

    assert main(["replay", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "VCD" in text and "FST" not in text
    done = subprocess.run([sys.executable, "-m", "testbenches.bench", "--help"], capture_output=True, text=True,
                          timeout=60)
    text = " ".join(done.stdout.split())
    assert done.returncode == 0 and "{gpi,cpp}" in text and "hdl:" not in text
    assert "cpp = the simulator's C++ main steps the clock" in text and "gpi = cocotb's GPI clock" in text
