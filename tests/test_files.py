"""lecun1989.files (atomic writes, JSON lines, one-line write errors) and the run folder's
life: checked before it is created, removed when a run fails before its first checkpoint."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from lecun1989 import files
from lecun1989.errors import UserError
from lecun1989.train import rundir


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if files.is_temporary(p.name)]


def test_write_bytes_replaces_the_file_whole_or_not_at_all(tmp_path, monkeypatch):
    path = tmp_path / "a.json"
    files.write_json(path, {"x": 1})
    assert json.loads(path.read_text()) == {"x": 1}

    def fail(src, dst):  # the rename fails (a full disk shows earlier, the effect is the same)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(UserError, match="the disk is full writing .*a.json; free space and run"):
        files.write_json(path, {"x": 2})
    assert json.loads(path.read_text()) == {"x": 1}  # the old file, whole
    assert leftovers(tmp_path) == []  # no temporary file left


def test_write_errors_are_one_line_and_say_what_to_do(tmp_path):
    with pytest.raises(UserError) as e:  # a real ENAMETOOLONG from the file system
        files.write_text(tmp_path / ("x" * 300), "hello")
    assert "is longer than the file system allows; choose a shorter --out" in str(e.value)
    assert leftovers(tmp_path) == []
    cases = {errno.ENOSPC: "the disk is full writing f; free space and resume with `go on`",
             errno.EACCES: "cannot write to f (permission); choose another folder with --out",
             errno.EROFS: "cannot write to f (read-only file system); choose another folder",
             errno.EIO: "cannot write f (Input/output error)"}
    for code, words in cases.items():
        message = str(files.write_error(OSError(code, os.strerror(code)), "f", "go on"))
        assert words in message and "\n" not in message, message


def test_read_jsonl_drops_a_torn_last_line_and_names_a_damaged_one(tmp_path):
    path = tmp_path / "m.jsonl"
    assert files.read_jsonl(path) == []
    for i in range(3):
        files.append_jsonl(path, {"pass": i})
    with open(path, "a") as f:
        f.write('{"pass": 3, "tr')  # a kill mid-append
    assert files.read_jsonl(path) == [{"pass": 0}, {"pass": 1}, {"pass": 2}]
    path.write_text('{"pass": 0}\n{"pa\n{"pass": 2}\n')
    with pytest.raises(UserError, match=r"m.jsonl line 2: not valid JSON"):
        files.read_jsonl(path)
    assert files.read_jsonl(path, limit=1) == [{"pass": 0}]  # what comes after is not read


def test_prepare_checks_out_before_creating_anything(tmp_path):
    too_long = tmp_path / "a" / ("x" * 300) / "run"
    with pytest.raises(UserError, match="longer than the file system allows"):
        rundir.prepare(too_long)
    assert not (tmp_path / "a").exists()
    deep = tmp_path.joinpath(*["p"] * 2100)  # longer than PATH_MAX, each name short
    with pytest.raises(UserError, match="the path .* is longer than the file system allows"):
        rundir.prepare(deep)
    assert not (tmp_path / "p").exists()
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match="cannot write there"):
        rundir.prepare(tmp_path / "f" / "run")


def test_release_removes_a_folder_the_run_created_and_left_without_a_checkpoint(tmp_path):
    out = tmp_path / "new" / "run"
    rundir.prepare(out)
    rundir.write_json(out / rundir.CONFIG, {})  # then the run fails: no checkpoint yet
    rundir.release(out)
    assert not (tmp_path / "new").exists()  # the folder and the parent prepare created
    rundir.prepare(out)
    (out / rundir.CHECKPOINT).write_bytes(b"x")  # a run that got as far as a checkpoint
    rundir.release(out)
    assert sorted(p.name for p in out.iterdir()) == [rundir.CHECKPOINT]  # kept: resumable
    mine = tmp_path / "mine"
    mine.mkdir()  # the user's own empty folder: emptied of the run's files, never removed
    rundir.prepare(mine)
    rundir.write_json(mine / rundir.CONFIG, {})
    rundir.release(mine)
    assert mine.is_dir() and list(mine.iterdir()) == []


def test_a_refused_folder_keeps_everything_in_it(tmp_path):
    folder = tmp_path / "theirs"
    folder.mkdir()
    (folder / rundir.CONFIG).write_text("{}")  # someone else's files, no checkpoint
    with pytest.raises(UserError, match="not empty"):
        rundir.prepare(folder)
    assert sorted(p.name for p in folder.iterdir()) == [rundir.CONFIG]


def test_jsonl_helpers_round_trip(tmp_path):
    path = tmp_path / "h.jsonl"
    files.extend_jsonl(path, [{"step": 1}, {"step": 2}])
    files.extend_jsonl(path, [])  # nothing to add: the file stays as it is
    files.append_jsonl(path, {"step": 3})
    assert files.read_jsonl(path) == [{"step": 1}, {"step": 2}, {"step": 3}]
    files.write_jsonl(path, [{"step": 1}])
    assert path.read_text() == '{"step": 1}\n' and leftovers(tmp_path) == []
