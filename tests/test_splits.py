"""Split lists to manifests, against the real UCF-101 split files and stand-in videos."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from inforates.data.manifest import read_manifest
from inforates.data.splits import (
    WHOLE_VIDEO,
    SplitEntry,
    build_manifest,
    count_frames,
    read_class_index,
    read_split_file,
)
from inforates.data.stamp import draw_stamp, read_stamps
from inforates.data.video_io import read_video, write_video

STAND_IN_CLASSES = ("ApplyEyeMakeup", "HandstandPushups", "YoYo")  # first, odd-cased, last
STAND_IN_GROUPS = ("01", "08", "15", "22")  # test group of split 1, 2, 3; then train-only


@pytest.fixture(scope="session")
def ucf_splits() -> Path:
    d = Path(__file__).resolve().parents[2] / "shared" / "ucf101_splits"
    if not (d / "classInd.txt").is_file():
        pytest.skip(f"real UCF-101 split files not found at {d}")
    return d


def _raw_lines(path: Path) -> list[str]:
    """Oracle: the file's non-blank lines, split independently of the code under test."""
    return [ln for ln in path.read_bytes().decode().split("\r\n") if ln.strip()]


def _oracle_class_ids(ucf: Path) -> dict[str, int]:
    return {name: int(i) for i, name in (ln.split() for ln in _raw_lines(ucf / "classInd.txt"))}


def _frames(n: int, size: int = 32) -> np.ndarray:
    frames = np.full((n, size, size, 3), 60, np.uint8)
    for t in range(n):
        draw_stamp(frames[t], t)
    return frames


def _write(path: Path, n: int, codec: str = "mjpeg") -> Path:
    write_video(path, _frames(n), codec=codec)
    return path


# ------------------------------------------------------------------ real split files


def test_class_index_of_real_ucf101(ucf_splits):
    index = read_class_index(ucf_splits / "classInd.txt")
    assert index == _oracle_class_ids(ucf_splits)
    assert len(index) == 101 and sorted(index.values()) == list(range(1, 102))
    assert index["ApplyEyeMakeup"] == 1 and index["HandstandPushups"] == 37 and index["YoYo"] == 101


@pytest.mark.parametrize("split", ["01", "02", "03"])
def test_real_split_lists_parse_completely(ucf_splits, split):
    ids = _oracle_class_ids(ucf_splits)
    train = read_split_file(ucf_splits / f"trainlist{split}.txt")
    test = read_split_file(ucf_splits / f"testlist{split}.txt")
    train_raw = _raw_lines(ucf_splits / f"trainlist{split}.txt")
    test_raw = _raw_lines(ucf_splits / f"testlist{split}.txt")
    assert len(train) == len(train_raw) and len(test) == len(test_raw)
    assert [e.path for e in train] == [ln.split()[0] for ln in train_raw]
    assert [e.label for e in train] == [int(ln.split()[1]) for ln in train_raw]
    assert all(e.label is None for e in test)
    assert all(ids[e.class_name] == e.label for e in train)
    assert {e.class_name for e in test} == set(ids)
    assert not {e.path for e in train} & {e.path for e in test}
    if split == "01":
        assert (len(train), len(test)) == (9537, 3783)


def test_class_is_the_folder_not_the_file_name(ucf_splits):
    entries = [e for e in read_split_file(ucf_splits / "trainlist01.txt") if e.class_name == "HandstandPushups"]
    assert entries and all(e.stem.startswith("v_HandStandPushups_") for e in entries)


# ----------------------------------------------------------------- stand-in UCF tree


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory, ucf_splits):
    """A UCF-101 tree holding c01 of four groups of three real classes, real names only.

    Returns (root, {relative path: frames written}).
    """
    root = tmp_path_factory.mktemp("ucf")
    names = set()
    for f in ("trainlist01.txt", "testlist01.txt"):  # split 1 lists every video once
        names |= {ln.split()[0] for ln in _raw_lines(ucf_splits / f)}
    wanted = sorted(
        n for n in names
        if n.split("/")[0] in STAND_IN_CLASSES and any(f"_g{g}_c01." in n for g in STAND_IN_GROUPS)
    )
    assert len(wanted) == len(STAND_IN_CLASSES) * len(STAND_IN_GROUPS)
    written = {}
    for i, rel in enumerate(wanted):
        written[rel] = 3 + i  # a different length per clip, to check num_frames
        _write(root / "UCF-101" / rel, written[rel])
    return root, written


@pytest.mark.parametrize("split", ["01", "02", "03"])
@pytest.mark.parametrize("kind", ["trainlist", "testlist"])
def test_stand_in_manifest_per_split(stand_in, ucf_splits, split, kind):
    root, written = stand_in
    split_file = ucf_splits / f"{kind}{split}.txt"
    out = root / f"{kind}{split}.csv"
    build = build_manifest(root / "UCF-101", split_file, out=out)

    listed = [ln.split()[0] for ln in _raw_lines(split_file)]
    expected = [p for p in listed if p in written]
    # split k tests group 1, 8 or 15; the other stand-in groups (and g22) are training data.
    test_group = STAND_IN_GROUPS[int(split) - 1]
    assert {p.split("_g")[-1][:2] for p in expected} == (
        {test_group} if kind == "testlist" else set(STAND_IN_GROUPS) - {test_group}
    )
    ids = _oracle_class_ids(ucf_splits)
    assert [r["source_video"] for r in build.rows] == expected
    for r in build.rows:
        assert r["label"] == r["source_video"].split("/")[0]
        assert r["label_id"] == ids[r["label"]] - 1
        assert r["num_frames"] == written[r["source_video"]]
        assert r["segment"] == WHOLE_VIDEO
    assert {r["label_id"] for r in build.rows} == {0, 36, 100}
    assert len(build.missing) == len(listed) - len(expected) and build.entries == len(listed)
    assert not build.unknown_class and not build.unreadable and build.manifest == out

    text = out.read_text()
    assert text.splitlines()[0] == "video_path,label,label_id,num_frames,source_video,segment"
    assert str(root) not in text  # paths stored relative to the manifest
    records = read_manifest(out)
    assert [(r.label, r.label_id, r.num_frames) for r in records] == [
        (r["label"], r["label_id"], r["num_frames"]) for r in build.rows
    ]
    for rec in records[:2]:
        assert read_stamps(read_video(rec.video_path)) == list(range(rec.num_frames))


def test_strict_mode_on_real_lists_reports_counts(stand_in, ucf_splits):
    root, written = stand_in
    total = len(_raw_lines(ucf_splits / "testlist01.txt"))
    found = sum(1 for p in written if "_g01_" in p)
    msg = f"entries={total}, found_entries={found}, rows={found}, missing={total - found}"
    with pytest.raises(ValueError, match=re.escape(msg)):
        build_manifest(root / "UCF-101", ucf_splits / "testlist01.txt", strict=True)


# -------------------------------------------------------------- small hand-made trees


@pytest.fixture()
def tiny(tmp_path):
    """Class A with whole, segmented, decoy and broken clips; class B absent from classInd."""
    clips = tmp_path / "clips"
    a = clips / "A"
    for name, n in [
        ("v_A_g01_c01_seg00.avi", 4), ("v_A_g01_c01_seg01.avi", 5), ("v_A_g01_c01_seg10.avi", 6),
        ("v_A_g01_c01_extra.avi", 2), ("v_A_g01_c010.avi", 2),
        (".v_A_g01_c01.partial.avi", 2),  # write_video's unfinished file
    ]:
        _write(a / name, n)
    _write(a / "v_A_g01_c02.webm", 7, codec="vp9")  # no frame count in WebM: counts packets
    (a / "v_A_g01_c01.txt").write_text("not a clip")
    (a / "v_A_g01_c01.avi.bak").write_bytes((a / "v_A_g01_c01_seg00.avi").read_bytes())
    (a / "v_A_g01_c04.avi").write_bytes(b"\x00" * 100)  # unreadable
    _write(clips / "B" / "v_B_g01_c01.avi", 3)
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "classInd.txt").write_bytes(b"1 A\r\n")
    (lists / "trainlist.txt").write_bytes(
        b"A/v_A_g01_c01.avi 1\r\nA/v_A_g01_c02.avi 1\r\nA/v_A_g01_c03.avi 1\r\n"
        b"A/v_A_g01_c04.avi 1\r\nB/v_B_g01_c01.avi 2\r\n"
    )
    return clips, lists


def test_segments_other_containers_and_decoys(tiny):
    clips, lists = tiny
    build = build_manifest(clips, lists / "trainlist.txt")
    got = [(Path(r["video_path"]).name, r["segment"], r["num_frames"], r["source_video"]) for r in build.rows]
    assert got == [
        ("v_A_g01_c01_seg00.avi", 0, 4, "A/v_A_g01_c01.avi"),
        ("v_A_g01_c01_seg01.avi", 1, 5, "A/v_A_g01_c01.avi"),
        ("v_A_g01_c01_seg10.avi", 10, 6, "A/v_A_g01_c01.avi"),
        ("v_A_g01_c02.webm", WHOLE_VIDEO, 7, "A/v_A_g01_c02.avi"),
    ]
    assert all(r["label"] == "A" and r["label_id"] == 0 for r in build.rows)
    assert [e.path for e in build.missing] == ["A/v_A_g01_c03.avi"]
    assert build.unknown_class == [clips / "B" / "v_B_g01_c01.avi"]
    assert [p.name for p, _ in build.unreadable] == ["v_A_g01_c04.avi"]
    assert build.counts() == {
        "entries": 5, "found_entries": 4, "rows": 4, "missing": 1, "unknown_class": 1, "unreadable": 1,
    }
    assert count_frames(clips / "A" / "v_A_g01_c02.webm") == 7


def test_strict_raises_with_examples(tiny):
    clips, lists = tiny
    with pytest.raises(ValueError, match=re.escape("1 split entries have no clip (e.g. A/v_A_g01_c03.avi)")):
        build_manifest(clips, lists / "trainlist.txt", strict=True)
    msg = "1 clips belong to classes missing from the class index (e.g. B/v_B_g01_c01.avi)"
    with pytest.raises(ValueError, match=re.escape(msg)):
        build_manifest(clips, lists / "trainlist.txt", strict=True)


def test_class_index_mapping_and_out(tiny, tmp_path):
    clips, lists = tiny
    build = build_manifest(clips, lists / "trainlist.txt", class_index={"A": 1, "B": 2}, out=tmp_path / "m.csv")
    assert [r["label_id"] for r in build.rows][-1] == 1 and not build.unknown_class
    records = read_manifest(tmp_path / "m.csv")
    assert [r.video_path.name for r in records][-1] == "v_B_g01_c01.avi"
    assert all(r.video_path.is_file() for r in records)


def test_empty_result_names_counts_and_examples(tmp_path):
    (tmp_path / "clips" / "A").mkdir(parents=True)
    (tmp_path / "classInd.txt").write_text("1 A\n")
    (tmp_path / "test.txt").write_text("".join(f"A/v_A_g01_c0{i}.avi\n" for i in range(1, 8)))
    msg = (
        "(entries=7, found_entries=0, rows=0, missing=7, unknown_class=0, unreadable=0); "
        "7 split entries have no clip (e.g. A/v_A_g01_c01.avi, A/v_A_g01_c02.avi, A/v_A_g01_c03.avi, "
        "A/v_A_g01_c04.avi, A/v_A_g01_c05.avi, ... (2 more))"
    )
    with pytest.raises(ValueError, match=re.escape(msg)):
        build_manifest(tmp_path / "clips", tmp_path / "test.txt")


def test_missing_inputs(tmp_path):
    with pytest.raises(ValueError, match=re.escape(f"clips_dir not found: {tmp_path / 'nope'}")):
        build_manifest(tmp_path / "nope", tmp_path / "x.txt")
    with pytest.raises(ValueError, match=re.escape(f"split file not found: {tmp_path / 'classInd.txt'}")):
        build_manifest(tmp_path, tmp_path / "x.txt")


def test_label_disagreeing_with_class_index(tmp_path):
    (tmp_path / "classInd.txt").write_text("1 A\n2 B\n")
    (tmp_path / "train.txt").write_text("A/v_A_g01_c01.avi 1\nB/v_B_g01_c01.avi 1\n")
    msg = "train.txt line 2: label 1 for 'B/v_B_g01_c01.avi' disagrees with the class index (B = 2)"
    with pytest.raises(ValueError, match=re.escape(msg)):
        build_manifest(tmp_path, tmp_path / "train.txt")


# ----------------------------------------------------------------------- parsing


def test_parsing_tolerates_crlf_blank_lines_and_trailing_spaces(tmp_path):
    f = tmp_path / "train.txt"
    f.write_bytes(b"\xef\xbb\xbfA/v_A_g01_c01.avi 1  \r\n\r\n   \r\nB/v_B_g02_c03.avi\t2\r\nC/v_C_g03_c01.avi")
    entries = read_split_file(f)
    assert entries == [
        SplitEntry("A", "A/v_A_g01_c01.avi", 1),
        SplitEntry("B", "B/v_B_g02_c03.avi", 2),
        SplitEntry("C", "C/v_C_g03_c01.avi", None),
    ]
    assert [e.line for e in entries] == [1, 4, 5]
    g = tmp_path / "classInd.txt"
    g.write_bytes(b"1 A \r\n\r\n2 B\r\n")
    assert read_class_index(g) == {"A": 1, "B": 2}


@pytest.mark.parametrize("text,message", [
    ("A/v.avi 1\n\nA/v2.avi x\n", "line 3: label 'x' must be a 1-based class id"),
    ("A/v.avi 0\n", "line 1: label '0' must be a 1-based class id"),
    ("A/v.avi 1 extra\n", "line 1: expected 'Class/file.ext [label]', got 'A/v.avi 1 extra'"),
    ("v_A_g01_c01.avi 1\n", "line 1: path 'v_A_g01_c01.avi' must be 'Class/file.ext'"),
    ("A/B/v.avi\n", "line 1: path 'A/B/v.avi' must be 'Class/file.ext'"),
    ("A/v_no_extension\n", "line 1: path 'A/v_no_extension' must be 'Class/file.ext'"),
])
def test_malformed_split_line_names_file_and_line(tmp_path, text, message):
    f = tmp_path / "list.txt"
    f.write_text(text)
    with pytest.raises(ValueError, match=re.escape(f"{f} {message}")):
        read_split_file(f)


@pytest.mark.parametrize("text,message", [
    ("1 A\n2\n", " line 2: expected '<id> <ClassName>' with id >= 1, got '2'"),
    ("1 A\nx B\n", " line 2: expected '<id> <ClassName>' with id >= 1, got 'x B'"),
    ("1 A\n2 A\n", " line 2: class 'A' listed twice (ids 1 and 2)"),
    ("1 A\n3 B\n", ": class ids must be 1..2 without gaps or repeats, got 1, 3"),
    ("\r\n", ": no classes"),
])
def test_malformed_class_index(tmp_path, text, message):
    f = tmp_path / "classInd.txt"
    f.write_text(text)
    with pytest.raises(ValueError, match=re.escape(f"{f}{message}")):
        read_class_index(f)
