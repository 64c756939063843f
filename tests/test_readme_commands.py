"""Every command the README shows works as written in a fresh clone (issue 15: `huggingface-cli` did not
exist in the pinned hub, commands failed without an activated venv).

For each command line of the README's ```bash blocks and each inline `hf` / `balancehead` / `dvc` / `snakemake` /
`.venv/bin/…` command:
the program exists where the line says (`.venv/bin/X` = next to the interpreter running the tests; a bare
`balancehead` / `dvc` in a bash block would need an activated venv and is refused), the subcommand exists
and every option the line uses appears in that subcommand's own `--help`. Nothing is run but `--help`.
"""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest

from conftest import REPO, tool_env

README = (REPO / "README.md").read_text(encoding="utf-8")
BIN = Path(sys.executable).parent
TOOLS = {"balancehead", "dvc", "snakemake", "mlflow", "hf"}
DEPTH = {"dvc": 2, "mlflow": 2, "snakemake": 0}   # words of a subcommand (`dvc exp run`); others: 1


def bash_lines() -> list[str]:
    lines = []
    for block in re.findall(r"^```bash\n(.*?)^```", README, flags=re.S | re.M):
        for line in block.splitlines():
            line = re.sub(r"(^|\s)#.*$", "", line).strip()
            if line:
                lines.append(line)
    return lines


def commands(line: str) -> list[list[str]]:
    """The simple commands of one shell line (`a && b; for …; do c; done`), as token lists."""
    out = []
    for part in re.split(r"&&|;|\|\|", line):
        part = re.sub(r"^\s*(do|then)\s+", "", part).strip()
        if not part or re.match(r"(for|done|fi|if)\b", part):
            continue
        tokens = [t.strip("[]") for t in shlex.split(part)]
        while tokens and re.match(r"^[A-Z_]+=", tokens[0]):          # VAR=value prefix
            tokens = tokens[1:]
        out.append([t for t in tokens if t])
    return out


def inline_commands() -> list[list[str]]:
    spans = re.findall(r"(?<!`)`([^`\n]+)`(?!`)", README)
    return [c for s in spans if re.match(r"(hf |balancehead |dvc |snakemake |\.venv/bin/\w|[A-Z_]+=\S+ \.venv/bin/\w)", s)
            for c in commands(s)]


CASES = sorted({" ".join(c) for line in bash_lines() for c in commands(line)} |
               {" ".join(c) for c in inline_commands()})


@lru_cache(maxsize=None)
def help_text(program: str, words: tuple[str, ...]) -> str:
    proc = subprocess.run([program, *words, "--help"], capture_output=True, text=True, timeout=120,
                          env=tool_env(), cwd=REPO)
    assert proc.returncode == 0, f"`{program} {' '.join(words)} --help` failed:\n{proc.stderr[-2000:]}"
    return proc.stdout + proc.stderr


def test_the_readme_shows_commands():
    assert any(c.startswith(".venv/bin/snakemake") for c in CASES) and any(c.startswith("hf download") for c in CASES)


@pytest.mark.parametrize("command", CASES)
def test_readme_command_exists_with_its_options(command):
    tokens = command.split(" ")
    head = tokens[0]
    if head == "make":
        for target in tokens[1:]:
            assert re.search(rf"^{re.escape(target)}:", (REPO / "Makefile").read_text(), re.M), f"no make target {target}"
        return
    if head.startswith(".venv/bin/"):
        name = head[len(".venv/bin/"):]
    else:
        in_bash = any(command == " ".join(c) for line in bash_lines() for c in commands(line))
        assert not in_bash, f"`{command}`: a bare `{head}` needs an activated venv; write .venv/bin/{head}"
        name = head
    assert name in TOOLS, f"`{command}`: unexpected program {head}"
    program = BIN / name
    assert program.exists(), f"`{command}`: {program} does not exist in the installed environment"
    args = tokens[1:]
    words = []                                   # the subcommand: leading lower-case words, at most DEPTH
    for a in args[:DEPTH.get(name, 1)]:
        if not re.fullmatch(r"[a-z][a-z0-9-]*", a):
            break
        words.append(a)
    words = tuple(words)
    text = help_text(str(program), words)
    for opt in (a.split("=")[0] for a in args if a.startswith("-") and a != "-"):
        assert re.search(rf"(^|[\s,\[/]){re.escape(opt)}([\s,=\]/]|$)", text, re.M), \
            f"`{command}`: option {opt} is not in `{name} {' '.join(words)} --help`"
