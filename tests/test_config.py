import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from inforates import config as cfglib


@dataclass(frozen=True)
class Demo:
    coverage: float = 100.0
    stride: int = 1
    policy: Literal["fixed", "all"] = "fixed"
    manifest: Path | None = None
    coverages: tuple[float, ...] = (10.0, 100.0)
    flag: bool = False


def test_defaults_yaml_cli_order(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("coverage: 50\nstride: 4\nmanifest: data/x.csv\ncoverages: [25, 50]\n")
    cfg = cfglib.resolve(Demo, cfglib.load_yaml(y), {"stride": 2, "coverage": None})
    assert cfg.coverage == 50.0  # YAML beats default, None override ignored
    assert cfg.stride == 2  # command line beats YAML
    assert cfg.manifest == Path("data/x.csv")
    assert cfg.coverages == (25.0, 50.0)
    assert cfg.policy == "fixed"


def test_unknown_key_is_an_error(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("coverge: 50\n")
    with pytest.raises(cfglib.ConfigError, match=re.escape("unknown config key 'coverge'")):
        cfglib.resolve(Demo, cfglib.load_yaml(y))


def test_aliases_accept_legacy_keys():
    cfg = cfglib.resolve(Demo, {"eval_stride": 8}, aliases={"eval_stride": "stride"})
    assert cfg.stride == 8


@pytest.mark.parametrize(
    "data,message",
    [
        ({"stride": "abc"}, "stride ('abc') must be an integer"),
        ({"stride": 2.5}, "stride (2.5) must be an integer"),
        ({"policy": "some"}, "policy ('some') must be one of: fixed, all"),
        ({"flag": "maybe"}, "flag ('maybe') must be true or false"),
        ({"coverage": "x"}, "coverage ('x') must be a number"),
    ],
)
def test_bad_values_name_key_and_value(data, message):
    with pytest.raises(cfglib.ConfigError, match=re.escape(message)):
        cfglib.resolve(Demo, data)


def test_load_yaml_errors(tmp_path):
    with pytest.raises(cfglib.ConfigError, match="config file not found"):
        cfglib.load_yaml(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(cfglib.ConfigError, match="must hold a mapping"):
        cfglib.load_yaml(bad)


def test_parse_set_and_dump_roundtrip(tmp_path):
    sets = cfglib.parse_set(["stride=3", "policy=all", "flag=true"])
    cfg = cfglib.resolve(Demo, None, sets)
    assert (cfg.stride, cfg.policy, cfg.flag) == (3, "all", True)
    cfglib.dump(cfg, tmp_path / "out.yaml")
    again = cfglib.resolve(Demo, cfglib.load_yaml(tmp_path / "out.yaml"))
    assert again == cfg
    with pytest.raises(cfglib.ConfigError, match=re.escape("--set expects key=value, got 'stride'")):
        cfglib.parse_set(["stride"])
