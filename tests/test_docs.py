"""Every code block of the README and of docs/ as a reader would paste it.

- ``python`` blocks run, in order, in one namespace per file (a later block may use what
  an earlier one defined, as a reader's session would), in a scratch directory. A line
  ``print(...)  # TEXT`` must print TEXT.
- ``bash`` blocks: every ``jaxconv-train`` command is composed with its overrides (the
  keys exist, the values have the schema's types, the options are there), without
  training; the other commands (make, pip, servers) are not run here.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import sys
import types
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra

from jaxconv.app.config import register

ROOT = Path(__file__).resolve().parents[1]
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


def blocks(path: Path, language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(path.read_text()) if lang == language]


def _ids(paths):
    return [str(p.relative_to(ROOT)) for p in paths]


def test_the_readme_stays_short():
    """Quick start, the API in five minutes, results; reference material lives in docs/."""
    assert len((ROOT / "README.md").read_bytes()) < 15_000


def test_the_fence_reader_finds_blocks():
    text = blocks(ROOT / "docs" / "tutorial.md", "python")
    assert len(text) >= 5 and "import jaxconv" in text[0]


PYTHON_FILES = [p for p in FILES if blocks(p, "python")]


@pytest.mark.parametrize("path", PYTHON_FILES, ids=_ids(PYTHON_FILES))
def test_python_blocks_run_as_pasted(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    module = types.ModuleType("__docs__")  # a module, as a reader's __main__ is: dataclasses
    monkeypatch.setitem(sys.modules, "__docs__", module)  # (Linen modules) look it up
    namespace: dict = module.__dict__
    for number, code in enumerate(blocks(path, "python"), 1):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, f"{path.name}, python block {number}", "exec"), namespace)
        expected = [
            m.group(1).strip() for m in re.finditer(r"^print\(.*\)\s+#\s*(.+)$", code, re.M)
        ]
        printed = out.getvalue().splitlines()
        for want in expected:
            assert want in printed, f"{path.name} block {number}: printed {printed}"


def jaxconv_train_commands(text: str) -> list[list[str]]:
    """The arguments of each ``jaxconv-train`` command in a shell block (continuation
    lines joined; environment assignments, ``-m`` and a trailing ``&`` dropped)."""
    commands = []
    for line in text.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
            words = words[1:]
        if words and words[0] == "jaxconv-train":
            commands.append([w for w in words[1:] if w not in ("-m", "--multirun", "&")])
    return commands


def first_choice(override: str) -> str:
    """``seed=0,1,2`` -> ``seed=0``: a sweep's first job (lists in brackets stay)."""
    key, _, value = override.partition("=")
    depth, cut = 0, len(value)
    for i, char in enumerate(value):
        depth += char in "[(" and 1 or (char in "])" and -1) or 0
        if char == "," and depth == 0:
            cut = i
            break
    return f"{key}={value[:cut]}" if _ else override


def test_first_choice_of_a_sweep():
    assert first_choice("seed=0,1,2") == "seed=0"
    assert first_choice("logger=[tensorboard,mlflow]") == "logger=[tensorboard,mlflow]"
    assert jaxconv_train_commands("A=1 jaxconv-train -m x=1,2 \\\n  y=3 &  # c\n") == [
        ["x=1,2", "y=3"]
    ]


SHELL = [(p, c) for p in FILES for b in blocks(p, "bash") for c in jaxconv_train_commands(b)]


@pytest.mark.parametrize(
    "path,args", SHELL, ids=[f"{p.name}: {' '.join(a) or '(defaults)'}" for p, a in SHELL]
)
def test_jaxconv_train_commands_compose(path, args):
    register()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module="jaxconv.conf", version_base="1.3"):
            cfg = compose(
                "config", overrides=[first_choice(a) for a in args], return_hydra_config=True
            )
    finally:
        GlobalHydra.instance().clear()
    assert cfg.trainer.batch_size >= 1 and ("_target_" in cfg.model or "target" in cfg.model)
