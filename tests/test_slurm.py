"""The tiny suite through a real SLURM scheduler gives the same numbers as a local run (issue 8).

ci/slurm/up.sh brings up a one-node SLURM on loopback (installing Debian's packages if needed),
the tiny config runs through profiles/slurm (every non-local job a real `sbatch`), every netCDF
file under results/ is compared with the local run's (values, not bytes or attrs), and
ci/slurm/down.sh stops the daemons whatever happened.

Pass/skip/fail:
- in CI (CI=true) it always runs: a cluster that does not come up is a failure;
- elsewhere it skips, with the reason, when not root, when SLURM is neither installed nor
  installable (no apt-get, or up.sh exits 3: the packages could not be installed), or when
  MULTIHEAD_ICL_SKIP_SLURM=1; any other failure fails.
Concurrent test sessions on one machine take turns (a lock file), since they share the cluster.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import xarray as xr
from conftest import ROOT, TINY_CONFIG, snakemake_bin

UP = ROOT / "ci" / "slurm" / "up.sh"
DOWN = ROOT / "ci" / "slurm" / "down.sh"
PROFILE = ROOT / "profiles" / "slurm"
LOCK = Path("/tmp/multihead-icl-slurm-test.lock")
UP_EXIT_NO_PACKAGES = 3  # up.sh: apt could not install SLURM/munge
RUN_LIMIT_S = 600  # the tiny suite takes about 2 minutes through SLURM (≈ 15–30 s per DAG level)
IN_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _skip_reason() -> str | None:
    """Why this machine cannot run the test outside CI (None: it can)."""
    if os.environ.get("MULTIHEAD_ICL_SKIP_SLURM", "") not in ("", "0"):
        return "MULTIHEAD_ICL_SKIP_SLURM is set"
    if os.geteuid() != 0:
        return "bringing up SLURM needs root (ci/slurm/up.sh installs packages and starts daemons)"
    if shutil.which("slurmctld") is None and shutil.which("apt-get") is None:
        return "SLURM is not installed and there is no apt-get to install it"
    return None


# Decided at collection, so that a skip costs nothing (not even the shared local run).
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not IN_CI and _skip_reason() is not None, reason=str(_skip_reason())),
]


def _not_possible(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"CI must run the SLURM test, but {reason}")
    pytest.skip(reason)


@pytest.fixture
def slurm_cluster():
    """A running one-node cluster for the test's duration; brought down even when the test fails."""
    reason = _skip_reason()
    if reason is not None:
        _not_possible(reason)
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another session's test is using the cluster: wait
        started = time.monotonic()
        try:
            up = subprocess.run(
                ["bash", str(UP)],
                capture_output=True,
                text=True,
                timeout=900,
                stdin=subprocess.DEVNULL,
            )
            bring_up_s = time.monotonic() - started
            output = f"{up.stdout[-3000:]}\n{up.stderr[-5000:]}"
            if up.returncode == UP_EXIT_NO_PACKAGES and not IN_CI:
                pytest.skip(
                    f"SLURM packages could not be installed: {up.stderr.strip().splitlines()[-1:]}"
                )
            if up.returncode != 0:
                pytest.fail(f"ci/slurm/up.sh failed ({up.returncode}):\n{output}")
            print(f"[slurm] bring-up took {bring_up_s:.1f} s\n{up.stdout}")
            yield {"bring_up_s": bring_up_s}
        finally:
            down = subprocess.run(
                ["bash", str(DOWN)],
                capture_output=True,
                text=True,
                timeout=120,
                stdin=subprocess.DEVNULL,
            )
            print(down.stdout)
            if down.returncode != 0:
                print(
                    f"ci/slurm/down.sh failed ({down.returncode}):\n{down.stderr}", file=sys.stderr
                )


def _run_through_slurm(workdir: Path) -> tuple[subprocess.CompletedProcess, float]:
    workdir.mkdir(parents=True, exist_ok=True)
    # Under `timeout -s INT`: the plugin may loop when it loses track of its jobs, and it stops on
    # SIGINT, which cancels its jobs; SIGTERM would leave them queued.
    command = ["timeout", "-s", "INT", "-k", "30", str(RUN_LIMIT_S), snakemake_bin(),
               "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
               "--configfile", str(TINY_CONFIG), "--workflow-profile", str(PROFILE)]  # fmt: skip
    # Jobs inherit this environment (sbatch --export=ALL): the project's venv comes first on PATH.
    venv_bin = str(Path(snakemake_bin()).parent)
    env = {
        **os.environ,
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONUNBUFFERED": "1",
    }
    started = time.monotonic()
    proc = subprocess.run(
        command, cwd=workdir, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL
    )
    return proc, time.monotonic() - started


def _netcdf_files(workdir: Path) -> set[Path]:
    return {path.relative_to(workdir) for path in (workdir / "results").rglob("*.nc")}


def _non_local_rules() -> set[str]:
    """Rules of workflow/rules/*.smk that do not declare ``localrule: True``: every job of these
    must go through sbatch (read from the rule files, so a rule wrongly made local fails the test).
    """
    rules = set()
    for path in (ROOT / "workflow" / "rules").glob("*.smk"):
        for block in re.split(r"^rule ", path.read_text(), flags=re.M)[1:]:
            name = block.split(":", 1)[0].strip()
            if not re.search(r"^\s+localrule:\s*True", block, flags=re.M):
                rules.add(name)
    return rules


def _squeue_states(run_id: str) -> dict[str, str]:
    """SLURM job id -> state for the jobs of one Snakemake run (finished ones stay for
    MinJobAge)."""
    command = ["squeue", "--states=all", "--noheader", "--name", run_id, "--format=%i|%T"]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return dict(line.split("|", 1) for line in out.split())


def test_tiny_suite_through_slurm_equals_local_run(slurm_cluster, tiny_workdir, tmp_path):
    workdir = tmp_path / "slurm"
    proc, run_s = _run_through_slurm(workdir)
    log = proc.stdout + proc.stderr
    timings = {"bring_up_s": round(slurm_cluster["bring_up_s"], 1), "slurm_run_s": round(run_s, 1)}
    print(f"[slurm] timings: {json.dumps(timings)}")
    assert proc.returncode == 0, (
        f"snakemake through SLURM failed ({proc.returncode}"
        f"{', timed out' if proc.returncode in (124, 137) else ''}):\n{log[-8000:]}"
    )

    # Every job of a non-local rule went through sbatch (training always does; cheap rules marked
    # `localrule` run on the submitting host), and SLURM saw each of them complete.
    submitted = dict(
        re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", log)
    )  # snakemake -> SLURM id
    finished = dict(
        re.findall(r"Finished jobid: (\d+) \(Rule: (\S+)\)", log)
    )  # snakemake id -> rule
    remote_rules = {finished.get(job) for job in submitted}
    assert "train" in remote_rules, (
        f"training did not go through SLURM (submitted: {remote_rules}):\n{log[-4000:]}"
    )
    non_local = _non_local_rules()
    assert "train" in non_local and "eval_set" not in non_local, non_local
    not_submitted = sorted(
        f"{rule} (job {job})"
        for job, rule in finished.items()
        if rule in non_local and job not in submitted
    )
    assert not not_submitted, f"jobs of rules run through SLURM ran locally: {not_submitted}"
    print(
        f"[slurm] {len(submitted)} jobs through sbatch ({', '.join(sorted(remote_rules))}), "
        f"{len(finished) - len(submitted)} local"
    )
    run_id = re.search(r"SLURM run ID: (\S+)", log).group(1)
    states = _squeue_states(run_id)
    assert states == dict.fromkeys(submitted.values(), "COMPLETED"), (
        f"SLURM jobs of this run: {states}"
    )

    # Same netCDF files, same numbers (attrs such as created/wall_seconds differ by design).
    local_files, slurm_files = _netcdf_files(tiny_workdir), _netcdf_files(workdir)
    assert local_files, "the local run produced no netCDF file"
    assert slurm_files == local_files, (
        f"only local: {sorted(map(str, local_files - slurm_files))}; "
        f"only SLURM: {sorted(map(str, slurm_files - local_files))}"
    )
    for relative in sorted(local_files):
        with (
            xr.open_dataset(tiny_workdir / relative) as expected,
            xr.open_dataset(workdir / relative) as actual,
        ):
            assert sorted(actual.data_vars) == sorted(expected.data_vars), relative
            for name in expected.data_vars:
                try:
                    xr.testing.assert_allclose(
                        actual[name].drop_attrs(), expected[name].drop_attrs()
                    )
                except AssertionError as error:
                    raise AssertionError(
                        f"{relative}: variable {name!r} differs from the local run\n{error}"
                    ) from None
