"""Every `lecun1989` command line that README.md and docs/*.md show runs and gives a sensible
run for the preset it uses: exit 0, and no "the network is not learning" warning. Training
commands run briefly (one pass on few digits); what a line leaves out ("...") is skipped."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from lecun1989.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TRAINS = ("reproduce", "train", "sweep")
BRIEF = ["--passes", "1", "--set", "data.limit_train=1500", "--set", "data.limit_test=300",
         "--quiet"]


def documented_commands(path: Path) -> list[list[str]]:
    """The lecun1989 command lines of a Markdown file's code blocks, continuations joined,
    comments and a leading `$ ` dropped; those with a placeholder (`...`, `[...]`) left out."""
    commands, block = [], False
    lines = path.read_text().splitlines()
    joined: list[str] = []
    for line in lines:
        if line.strip().startswith("```"):
            block = not block
            continue
        if block:
            if joined and joined[-1].endswith("\\"):
                joined[-1] = joined[-1][:-1] + " " + line.strip()
            else:
                joined.append(line.strip())
    for line in joined:
        line = line.removeprefix("$ ")
        if not line.startswith("lecun1989 "):
            continue
        words = shlex.split(line, comments=True)[1:]
        if any("..." in w or w.startswith("[") or w.startswith("<") or "|" in w
               for w in words):
            continue
        commands.append(words)
    return commands


PLACEHOLDERS = {"RUN_DIR": "runs/doc-run", "digit.png": "docs/demo-3.png"}


def _adapted(words: list[str], usps: Path | None) -> list[str] | None:
    """The command made brief and local; None when it needs what this machine lacks."""
    words = [PLACEHOLDERS.get(w, w) for w in words]
    if "--cluster" in words and words[words.index("--cluster") + 1] == "slurm":
        return None  # needs a SLURM cluster
    if "--resume" in words:
        return None  # needs an interrupted run (tests/test_resume.py)
    for i, w in enumerate(words):
        if w == "--data-dir" and "usps" in words[i + 1]:
            if usps is None:
                return None
            words[i + 1] = str(usps)
    if words[0] in TRAINS and "--table" not in words:
        if "--passes" in words:
            del words[words.index("--passes"):words.index("--passes") + 2]
        if words[0] == "sweep" and "--seeds" in words:
            words[words.index("--seeds") + 1] = "0"  # one seed per setting is enough here
        if "--data" not in words and "--data-dir" not in words:
            words += ["--data", "digits"]
        words += BRIEF
    return words


def test_the_docs_show_commands_to_check():
    found = {p.name: len(documented_commands(p)) for p in DOCS}
    assert found["README.md"] >= 10 and sum(found.values()) >= 15, found


SHOWN = [p for p in DOCS if documented_commands(p)]  # the files that show command lines


@pytest.mark.parametrize("path", SHOWN, ids=[p.name for p in SHOWN])
def test_documented_commands_run_and_learn(path, tmp_path, monkeypatch, capsys,
                                           real_usps_dir_or_none):
    """A file's commands run in order in one folder (a later line may read what an earlier
    one wrote: `demo runs/paper` after `reproduce --out runs/paper`), RUN_DIR standing for a
    brief run made first."""
    commands = documented_commands(path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "docs").mkdir()
    for picture in (ROOT / "docs").glob("*.png"):  # the pictures the commands name
        (tmp_path / "docs" / picture.name).symlink_to(picture)
    setup = ["reproduce", "--data", "digits", "--out", PLACEHOLDERS["RUN_DIR"], *BRIEF]
    assert main(setup) == 0
    capsys.readouterr()
    ran = 0
    for words in commands:
        command = _adapted(words, real_usps_dir_or_none)
        if command is None:
            continue
        status = main(command)
        out, err = capsys.readouterr()
        shown = " ".join(words)
        assert status == 0, f"`lecun1989 {shown}` exited {status}: {err.strip()}"
        assert "not learning" not in out + err, f"`lecun1989 {shown}`: {out}{err}"
        ran += 1
    assert ran, "every command was skipped"
