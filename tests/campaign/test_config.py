"""Campaign configuration: every bad value is refused with a message naming it, before any work."""

import pytest

from fault_campaigns.planning.config import CampaignConfig
from quasar.errors import QuasarError


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bits": 0}, "bits"),
        ({"bits": 1}, "bits"),
        ({"bits": 17}, "bits"),
        ({"net": "vgg"}, "'vgg'"),
        ({"rows": 0}, "rows"),
        ({"cols": 65}, "cols"),
        ({"margin": 0.0}, "margin"),
        ({"margin": 1.0}, "margin"),
        ({"confidence": 1.0}, "confidence"),
        ({"confidence": -0.1}, "confidence"),
        ({"protections": ("tmr",)}, "'tmr'"),
        ({"protections": ("none", "range:zro")}, "protection spec 'range:zro': unknown part 'zro'"),
        ({"protections": ("range", "range:clamp")}, "names 'range' twice"),
        ({"fault_model": "flip3"}, "'flip3'"),
        ({"targets": ("wires",)}, "'wires'"),
        ({"golden_images": 5, "images": 2}, "golden images"),
        ({"layers": ("conv9",)}, "'conv9'"),
        ({"k_max": 64}, "k_max"),
        ({"act_format": "fp8"}, "act format must be one of calibrated, pow2; got 'fp8'"),
        ({"act_format": "pow2", "int_bits": 9}, r"int bits \(ap_ufixed<8, I> integer bits\) must be in 0..8, got 9"),
        ({"act_format": "pow2", "int_bits": -1}, r"must be in 0..8, got -1"),
        ({"int_bits": 3}, "int bits .3. only apply to act format 'pow2', not 'calibrated'"),
    ],
)
def test_bad_values_are_named(kwargs, message):
    with pytest.raises(QuasarError, match=message):
        CampaignConfig(**kwargs)


def test_format_is_part_of_the_campaign_identity(tmp_path):
    base, pow2 = CampaignConfig(), CampaignConfig(act_format="pow2")
    fixed = CampaignConfig(act_format="pow2", int_bits=4)
    assert len({base.campaign_id, pow2.campaign_id, fixed.campaign_id}) == 3
    assert "act_format" not in base.identity()  # campaign ids from before the formats stay valid
    assert (base.requant, pow2.requant) == ("mul", "shift")
    assert pow2.default_dir(tmp_path).name.startswith("lenet-a8w8-pow2-8x8-flip-")
    assert fixed.default_dir(tmp_path).name.startswith("lenet-a8w8-pow2i4-8x8-flip-")


def test_protections_are_specs_by_canonical_name():
    cfg = CampaignConfig(protections=("none", "range", "range:zero", "range:acc:channel"))
    assert cfg.protections == ("none", "range", "range:zero:act:layer", "range:clamp:acc:channel")
    assert CampaignConfig().protections == ("none", "range")
    assert CampaignConfig(protections=("none", "range:clamp:act:layer")).campaign_id == CampaignConfig().campaign_id


def test_identity_ignores_where_the_data_lives(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "data").write_text("x")
    a = CampaignConfig(data_dir=str(tmp_path / "a"))
    b = CampaignConfig(data_dir=str(tmp_path / "b"))
    assert a.campaign_id == b.campaign_id
    assert CampaignConfig(seed=1).campaign_id != a.campaign_id
    assert CampaignConfig(bits=8).campaign_id == CampaignConfig(bits=8, act_bits=8).campaign_id


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--bits", "17"], "bits"),
        (["--bits", "1"], "bits"),
        (["--net", "resnet"], "'resnet'"),
        (["--margin", "0"], "margin"),
        (["--confidence", "1.5"], "confidence"),
        (["--rows", "0"], "rows"),
        (["--k-max", "100"], "k_max"),
        (["--workers", "0"], "workers"),
        (["--act-format", "posit"], "act format must be one of calibrated, pow2; got 'posit'"),
        (["--act-format", "pow2", "--bits", "4", "--int-bits", "5"], "must be in 0..4, got 5"),
        (["--int-bits", "2"], "only apply to act format 'pow2'"),
    ],
)
def test_cli_refuses_bad_input_before_any_work(argv, message, tmp_path, capsys):
    from quasar.cli import main

    out = tmp_path / "run"
    assert main(["campaign", "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not out.exists()  # nothing was created, trained or built


def test_cli_names_an_unwritable_output_directory(tmp_path, capsys):
    from quasar.cli import main

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert main(["campaign", "--net", "tiny", "--bits", "4", "--out", str(blocker / "run")]) == 2
    assert "not writable" in capsys.readouterr().err
