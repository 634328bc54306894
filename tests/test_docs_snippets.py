"""Every ```python, ```bash and ```console block in README.md and docs/*.md runs, so the docs cannot drift.

A block that must not run (installs, hour-long studies, torchrun, SLURM) is preceded by the line
``<!-- snippet: skip (reason) -->``. The blocks of one page run in order in one temporary directory (a later
block may use an earlier one's files), with one torch thread, ``configs/`` linked in, and ``irob`` being
``python -m intrinsic_robustness.cli`` of this interpreter. Output blocks are ```text and are not run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUNNABLE = {"python", "bash", "sh", "console"}
KNOWN = RUNNABLE | {"", "text", "toml", "json", "bibtex", "yaml", "cff", "diff"}  # a bare fence is not run either
FENCE = re.compile(r"^```\s*([\w-]*)\s*$")
SKIP = re.compile(r"^<!--\s*snippet:\s*skip\s*\((?P<reason>[^)]+.*)\)\s*-->$")
MACHINE_PATHS = re.compile(r"\.\./shared|/tmp/|/work/|/root/|/home/\w")
TIMEOUT_S = 180


@dataclass(frozen=True)
class Snippet:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    skip: str | None  # the reason given in the skip marker, or None

    @property
    def where(self) -> str:
        return f"{self.page.name}:{self.line}"


def parse_markdown(text: str, page: Path) -> list[Snippet]:
    """The fenced blocks of Markdown text, with the skip marker (if any) on the last non-blank line before."""
    lines = text.splitlines()
    out: list[Snippet] = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        start = i
        i += 1
        while i < len(lines) and lines[i].rstrip() != "```":
            i += 1
        before = next((s.strip() for s in reversed(lines[:start]) if s.strip()), "")
        skip = SKIP.match(before)
        out.append(Snippet(page, start + 1, match.group(1), "\n".join(lines[start + 1:i]),
                           skip.group("reason").strip() if skip else None))
        i += 1
    return out


def parse(page: Path) -> list[Snippet]:
    return parse_markdown(page.read_text(encoding="utf-8"), page)


def console_commands(code: str) -> str:
    """The ``$ ...`` lines of a console block (with their ``\\`` continuations) as a script; output is dropped."""
    commands: list[str] = []
    continuing = False
    for line in code.splitlines():
        if line.startswith("$ "):
            commands.append(line[2:])
        elif continuing:
            commands[-1] += "\n" + line
        else:
            continue
        continuing = line.rstrip().endswith("\\")
    return "\n".join(commands)


def snippets(page: Path) -> list[Snippet]:
    return [s for s in parse(page) if s.lang in RUNNABLE]


def _environment(work: Path) -> dict[str, str]:
    shims = work / ".bin"
    shims.mkdir()
    irob = shims / "irob"
    irob.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m intrinsic_robustness.cli "$@"\n')
    irob.chmod(0o755)
    env = dict(os.environ)
    env.update(PATH=f"{shims}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg", NO_COLOR="1", COLUMNS="120")
    env.pop("IROB_DATA", None)
    return env


def _run(snippet: Snippet, work: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    if snippet.lang == "python":
        script = work / f".snippet-{snippet.line}.py"
        script.write_text(snippet.code + "\n")
        command = [sys.executable, str(script)]
    else:
        code = console_commands(snippet.code) if snippet.lang == "console" else snippet.code
        command = ["bash", "-euo", "pipefail", "-c", code]
    return subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)


RUN_PAGES = [p for p in PAGES if any(s.skip is None for s in snippets(p))]


@pytest.mark.parametrize("page", RUN_PAGES, ids=[p.name for p in RUN_PAGES])
def test_page_snippets_run(page: Path, tmp_path: Path) -> None:
    """Each runnable block of the page exits 0, in page order, in a fresh directory."""
    (tmp_path / "configs").symlink_to(ROOT / "configs", target_is_directory=True)
    env = _environment(tmp_path)
    for snippet in snippets(page):
        if snippet.skip is not None:
            continue
        result = _run(snippet, tmp_path, env)
        assert result.returncode == 0, (
            f"{snippet.where}: the {snippet.lang} block failed (exit {result.returncode})\n--- block\n{snippet.code}"
            f"\n--- stdout (tail)\n{result.stdout[-3000:]}\n--- stderr (tail)\n{result.stderr[-3000:]}")


def test_every_block_is_tagged_and_every_skip_has_a_reason() -> None:
    """Blocks use a known language (```text for output), and a skip marker only precedes a runnable block."""
    problems = []
    for page in PAGES:
        for s in parse(page):
            if s.lang not in KNOWN:
                problems.append(f"{s.where}: fence language {s.lang!r}; use one of {sorted(KNOWN)}")
        lines = page.read_text(encoding="utf-8").splitlines()
        marked = {s.line for s in parse(page) if s.skip is not None and s.lang in RUNNABLE}
        for n, line in enumerate(lines, 1):
            if line.lstrip().startswith("<!--") and "snippet" in line and not SKIP.match(line.strip()):
                problems.append(f"{page.name}:{n}: malformed marker; write <!-- snippet: skip (reason) -->")
            elif SKIP.match(line.strip()):
                following = next((k for k in range(n + 1, len(lines) + 1) if lines[k - 1].strip()), None)
                if following not in marked:
                    problems.append(f"{page.name}:{n}: skip marker not directly before a python/bash/console block")
    assert not problems, "\n".join(problems)


def test_parser_reads_markers_console_prompts_and_continuations(tmp_path: Path) -> None:
    page = tmp_path / "p.md"
    page.write_text("<!-- snippet: skip (hours) -->\n```bash\nsleep 9999\n```\n\n```console\n$ echo a \\\n"
                    "    b\nout\n$ echo c\n```\n```text\nx\n```\n")
    found = parse(page)
    assert [(s.lang, s.skip) for s in found] == [("bash", "hours"), ("console", None), ("text", None)]
    assert console_commands(found[1].code) == "echo a \\\n    b\necho c"


def test_no_machine_specific_paths() -> None:
    """A user's clone has no ../shared or this machine's directories: the docs never name them."""
    hits = [f"{p.relative_to(ROOT)}:{n}: {line.strip()}" for p in PAGES
            for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if MACHINE_PATHS.search(line)]
    assert not hits, "\n".join(hits)


def test_relative_links_resolve() -> None:
    """Every relative link in README.md and docs/ names a file of the repository."""
    link = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
    missing = []
    for page in PAGES:
        for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            for target in link.findall(line):
                if "://" in target or target.startswith("mailto:"):
                    continue
                if not (page.parent / target).exists():
                    missing.append(f"{page.relative_to(ROOT)}:{n}: {target}")
    assert not missing, "links to missing files:\n" + "\n".join(missing)


def test_readme_test_command_is_what_ci_runs() -> None:
    """The README's test command is exactly the last command of .ci/run."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Tests", 1)[1].split("\n## ", 1)[0]
    blocks = [s for s in parse_markdown(section, ROOT / "README.md") if s.lang == "bash"]
    assert len(blocks) == 1, "the README's Tests section has one bash block: the test command"
    command = blocks[0].code.strip()
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.lstrip().startswith("#")]
    last = ci[-1].split("&&")[-1].strip()
    assert last == command, f".ci/run ends with {last!r}, the README says {command!r}"
