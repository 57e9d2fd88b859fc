"""Training configuration: presets, YAML, overrides, schema (no TensorFlow needed)."""

from __future__ import annotations

import pytest
import yaml

from segkit.errors import InputError, UsageError
from segkit.schemas import validate
from segkit.train.config import PRESETS, SWITCHES, dump, load_config, parse_duration


def test_paper_preset_is_the_papers_setup():
    c = load_config("paper")
    assert c["model"]["backbone"] == "resnet50" and c["model"]["input_size"] == 512
    assert c["model"]["encoder_weights"] == "imagenet"
    assert c["train"]["batch_size"] == 8 and c["train"]["epochs"] == 29
    assert c["model"]["bottleneck"] == {"depth": 4, "heads": 8, "hidden": 1024, "dropout": 0.1, "activation": "gelu"}
    assert all(c["model"][s] is True for s in SWITCHES)


@pytest.mark.parametrize("variant, on", [("unet", set()), ("unet_transformer", {"transformer"}),
                                         ("hybrid", set(SWITCHES))])
def test_variant_decides_the_switches_left_open(variant, on):
    c = load_config("cpu-small", overrides={"model": {"variant": variant}})
    assert {s for s in SWITCHES if c["model"][s]} == on


def test_one_switch_is_one_ablation():
    c = load_config("cpu-small", overrides={"model": {"variant": "hybrid", "cbam": False}})
    assert {s for s in SWITCHES if not c["model"][s]} == {"cbam"}


def test_switches_on_sm_unet_are_refused():
    with pytest.raises(UsageError, match=r"model\.se cannot be switched on for variant 'unet'"):
        load_config("cpu-small", overrides={"model": {"variant": "unet", "se": True}})


def test_yaml_file_is_applied_over_the_preset_and_resolved_config_validates(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("model:\n  variant: unet_transformer\n  bottleneck: {depth: 1}\ntrain:\n  max_time: 1h30m\n")
    c = load_config("cpu-small", path)
    assert c["model"]["variant"] == "unet_transformer" and c["model"]["bottleneck"]["depth"] == 1
    assert c["model"]["bottleneck"]["heads"] == PRESETS["cpu-small"]["model"]["bottleneck"]["heads"]
    assert c["train"]["max_time"] == 5400.0
    validate(c, "train-config")
    assert yaml.safe_load(dump(c)) == c


def test_unknown_setting_names_where_it_is(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("train:\n  epochz: 3\n")
    with pytest.raises(UsageError, match=r"typo\.yaml: invalid setting at train: Additional properties .*epochz"):
        load_config("cpu-small", path)
    path.write_text("model:\n  input_size: 100\n")
    with pytest.raises(UsageError, match=r"invalid setting at model/input_size: 100 is not a multiple of 32"):
        load_config("cpu-small", path)


def test_broken_yaml_is_an_input_error(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("model: [unclosed\n")
    with pytest.raises(InputError, match=r"broken\.yaml: is not valid YAML at line"):
        load_config("cpu-small", path)
    with pytest.raises(InputError, match=r"absent\.yaml: cannot read the config file"):
        load_config("cpu-small", tmp_path / "absent.yaml")


def test_unknown_preset_is_a_usage_error():
    with pytest.raises(UsageError, match=r"--preset: unknown preset 'gpu-huge'"):
        load_config("gpu-huge")


@pytest.mark.parametrize("text, seconds", [("11h30m", 41400.0), ("45m", 2700.0), ("90s", 90.0), ("120", 120.0),
                                           ("1h", 3600.0)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_bad_duration_is_a_usage_error():
    with pytest.raises(UsageError, match=r"--max-time: '11 hours' is not a duration"):
        parse_duration("11 hours")
