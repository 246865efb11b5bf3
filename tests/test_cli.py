"""The command line: --help per command, one-line errors with exit 2, and runs on tiny data."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from inforates.cli import cli

COMMANDS = [[], ["frames"], ["data"], ["data", "synth"], ["data", "build-clips"], ["data", "build-manifest"], ["run"], ["train"], ["sweep"], ["flops"], ["report"], ["spectrum"], ["throughput"]]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a) or "root")
def test_help(args):
    res = CliRunner().invoke(cli, [*args, "--help"])
    assert res.exit_code == 0, res.output
    assert "Usage:" in res.output


def _run(*args, env=None):
    """Run the real console entry point (exit codes and stderr as a user sees them)."""
    return subprocess.run(
        [sys.executable, "-c", "from inforates.cli import main; main()", *args],
        capture_output=True, text=True, env=env, timeout=600,
    )


def test_frames_json():
    res = _run("frames", "--num-frames", "50", "--coverage", "25", "--stride", "4", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["indices"] == [0, 0, 0, 0, 4, 4, 4, 8]
    assert out["distinct_frames"] == 3 and out["keep"] == 12
    text = _run("frames", "-N", "20", "--coverage", "50", "--stride", "3", "--policy", "all")
    assert "indices: 0 3 6 9" in text.stdout


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--coverage", "0"], "coverage (0) must be in (0, 100]"),
        (["--coverage", "150"], "coverage (150) must be in (0, 100]"),
        (["--coverage", "abc"], "coverage ('abc') must be a number in (0, 100]"),
        (["--stride", "0"], "stride (0) must be an integer >= 1"),
        (["--stride", "1.5"], "stride ('1.5') must be an integer >= 1"),
    ],
)
def test_bad_sampling_options_exit_2_one_line(args, needle):
    for cmd in (["run"], ["frames", "-N", "50"]):
        res = _run(*cmd, *args)
        assert res.returncode == 2, (cmd, res.stderr)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1, res.stderr
        assert needle in lines[0]
        assert "Traceback" not in res.stderr


def test_missing_manifest_and_checkpoint_name_the_path(tmp_path):
    res = _run("run", "--manifest", str(tmp_path / "nope.csv"), "--checkpoint", "timesformer-tiny")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [f"Error: manifest not found: {tmp_path / 'nope.csv'}"]


def test_unknown_config_key(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("coverag: 50\n")
    res = _run("run", "--config", str(cfg))
    assert res.returncode == 2
    assert "unknown config key 'coverag'" in res.stderr and len(res.stderr.strip().splitlines()) == 1
