"""`data build-clips` and `data build-manifest` (official lists and stratified splits) via the CLI."""

import numpy as np
import pandas as pd
from click.testing import CliRunner

from inforates.cli import cli
from inforates.data.stamp import draw_stamp, read_stamps
from inforates.data.video_io import read_video, write_video

CLASSES = ["abseiling", "juggling", "surfing"]  # Kinetics-style tree, no official lists


def _tree(root, per_class=5, frames=45):
    for c in CLASSES:
        for v in range(per_class):
            rng = np.random.default_rng(v)
            imgs = [draw_stamp(rng.integers(40, 200, (48, 48, 3), dtype=np.uint8), i) for i in range(frames)]
            write_video(root / c / f"{c}_{v:03d}.mp4", imgs, codec="h264")


def test_build_clips_then_stratified_split(tmp_path):
    _tree(tmp_path / "videos")
    (tmp_path / "videos" / "juggling" / "broken.mp4").write_bytes(b"not a video")
    runner = CliRunner()
    res = runner.invoke(cli, ["data", "build-clips", "--video-root", str(tmp_path / "videos"),
                              "--out", str(tmp_path / "clips"), "--frames", "20", "--workers", "1"])
    assert res.exit_code == 1, res.output  # one source failed: listed, build completed
    assert "30 clips" in res.stdout and "failures listed" in res.stderr
    clip = read_video(tmp_path / "clips" / "surfing" / "surfing_002_seg01.avi")
    assert read_stamps(clip) == list(range(20, 40))

    out = tmp_path / "splits"
    res = runner.invoke(cli, ["data", "build-manifest", "--clips-dir", str(tmp_path / "clips"),
                              "--out", str(out), "--fractions", "0.6,0.2,0.2", "--seed", "1"])
    assert res.exit_code == 0, res.output
    frames = {name: pd.read_csv(out / f"{name}.csv") for name in ("train", "dev", "test")}
    assert sum(len(f) for f in frames.values()) == 30
    sources = {name: set(f["source_video"]) for name, f in frames.items()}
    assert not (sources["train"] & sources["test"]) and not (sources["train"] & sources["dev"])
    for f, per_class in ((frames["train"], 3), (frames["dev"], 1), (frames["test"], 1)):
        assert (f.groupby("label")["source_video"].nunique() == per_class).all()  # stratified
        assert (f["num_frames"] == 20).all()
    assert (out / "classInd.txt").read_bytes().startswith(b"1 abseiling\r\n")
    assert (out / "trainlist.txt").is_file() and (out / "testlist.txt").is_file()

    again = tmp_path / "splits2"
    runner.invoke(cli, ["data", "build-manifest", "--clips-dir", str(tmp_path / "clips"),
                        "--out", str(again), "--fractions", "0.6,0.2,0.2", "--seed", "1"])
    assert (again / "testlist.txt").read_text() == (out / "testlist.txt").read_text()


def test_build_manifest_errors_are_one_line(tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["data", "build-manifest", "--clips-dir", str(tmp_path / "none"), "--out", str(tmp_path / "x.csv")])
    assert res.exit_code == 2 and "clips dir not found" in res.output
    (tmp_path / "clips").mkdir()
    res = runner.invoke(cli, ["data", "build-manifest", "--clips-dir", str(tmp_path / "clips"),
                              "--split-file", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "x.csv")])
    assert res.exit_code == 2 and "split file not found" in res.output
    res = runner.invoke(cli, ["data", "build-manifest", "--clips-dir", str(tmp_path / "clips"), "--out", str(tmp_path / "s"),
                              "--fractions", "0.5,0.6,0.1"])
    assert res.exit_code == 2 and "must be three non-negative numbers summing to 1" in res.output
