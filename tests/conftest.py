"""Shared fixtures: a fast torch, the repository paths, and a Snakemake runner in a temporary
directory."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "src" / "multihead_icl" / "config.schema.yaml"
TINY_CONFIG = ROOT / "config" / "tiny.yaml"
# the report's stylesheet as bin/pipeline passes it (absolute: Snakemake reads it in --directory)
REPORT_STYLESHEET = ROOT / "report" / "report.css"

torch.set_num_threads(1)


def tool(name: str) -> str:
    """A command-line tool of the environment running the tests (beside its Python), else on PATH;
    the test is skipped when neither has it."""
    candidate = Path(sys.executable).with_name(name)
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed in this environment (bin/setup installs it)")
    return found


def snakemake_bin() -> str:
    return tool("snakemake")


def run_snakemake(
    workdir: Path, *args: str, config: Path | None = TINY_CONFIG, check: bool = True
) -> subprocess.CompletedProcess:
    """Run the repository's workflow with ``workdir`` as its working directory (results go
    there)."""
    workdir.mkdir(parents=True, exist_ok=True)
    command = [
        snakemake_bin(),
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(workdir),
        "--cores",
        "2",
    ]
    if config is not None:
        command += ["--configfile", str(config)]
    command += list(args)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed "
            f"({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


@pytest.fixture(scope="session")
def tiny_workdir(tmp_path_factory) -> Path:
    """One end-to-end run of the tiny suite, shared by the tests that read its outputs."""
    workdir = tmp_path_factory.mktemp("tiny")
    run_snakemake(workdir)
    return workdir


def rendering_defects(html: str) -> list[str]:
    """What Jinja's trim_blocks (Snakemake renders captions with it) does to a caption when a block
    tag ends a line of text: the newline goes, so a sentence runs into the next ("1.0.The"), bold
    after it stays literal ("**C1"), and a list joins the paragraph before it."""
    defects = []
    for paragraph in re.findall(r"<p>(.*?)</p>", html, re.S):
        if re.search(r"\n\s*[-*] ", paragraph):
            defects.append(f"a list inside a paragraph: {paragraph[:160]!r}")
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
    for match in re.finditer(r"[a-z0-9)][.;:]\**[A-Z][a-z]|\*\*", text):
        defects.append(
            f"text run together: {text[max(0, match.start() - 40) : match.end() + 20]!r}"
        )
    return defects
