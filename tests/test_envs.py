"""The conda envs for cluster users must pin the same versions as the project (conda is not on our
machines, so this consistency check is how the envs stay honest)."""

import re
import tomllib

import pytest
import yaml
from conftest import ROOT

# conda-forge name -> PyPI name, where they differ
CONDA_TO_PYPI = {"pytorch": "torch", "netcdf4": "netCDF4", "pyyaml": "pyyaml"}
ENV_FILES = sorted((ROOT / "envs").glob("*.yaml"))


def pypi_pins() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = project["dependencies"] + [
        d for extra in project["optional-dependencies"].values() for d in extra
    ]
    pins = {}
    for spec in specs:
        name, version = re.fullmatch(r"([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^;\s]+)", spec).groups()
        pins[name.lower()] = version
    return pins


def release(version: str) -> str:
    """conda-forge drops PyPI post-release suffixes (1.7.5.1.post1 is 1.7.5.1 there)."""
    return re.sub(r"\.post\d+$", "", version)


def test_there_is_an_env_per_stage_and_every_rule_names_one():
    assert ENV_FILES, "no envs/*.yaml"
    rules = "".join(p.read_text() for p in (ROOT / "workflow" / "rules").glob("*.smk"))
    used = set(re.findall(r'conda:\s*\n\s*"\.\./\.\./envs/([\w\-]+\.yaml)"', rules))
    assert used, "no rule names a conda env"
    assert used <= {p.name for p in ENV_FILES}, used


@pytest.mark.parametrize("path", ENV_FILES, ids=[p.name for p in ENV_FILES])
def test_env_is_pinned_on_conda_forge_and_agrees_with_pyproject(path):
    env = yaml.safe_load(path.read_text())
    assert env["channels"][0] == "conda-forge" and "nodefaults" in env["channels"]
    pins = pypi_pins()
    checked = 0
    for dep in env["dependencies"]:
        assert isinstance(dep, str), f"{path.name}: no pip section please ({dep})"
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*=\s*([0-9][^\s]*)", dep)
        assert match, f"{path.name}: {dep!r} is not pinned as `name =version`"
        name, version = match.groups()
        if name == "python":
            assert tuple(int(v) for v in version.split(".")[:2]) >= (3, 11), (
                f"{path.name}: python ={version}"
            )
            continue
        pypi = CONDA_TO_PYPI.get(name, name).lower()
        assert pypi in pins, f"{path.name}: {name} is not a pinned dependency in pyproject.toml"
        assert release(pins[pypi]) == version, (
            f"{path.name}: {name} ={version} but pyproject pins {pins[pypi]}"
        )
        checked += 1
    assert checked >= 3


def test_lock_file_agrees_with_pyproject():
    lock = dict(
        line.split("==", 1)
        for line in (ROOT / "requirements.lock").read_text().splitlines()
        if "==" in line
    )
    lock = {k.lower(): v for k, v in lock.items()}
    for name, version in pypi_pins().items():
        assert lock.get(name.lower()) == version, (
            f"requirements.lock has {name}=={lock.get(name.lower())}, pyproject {version}"
        )


def test_figure_stages_do_not_need_torch():
    """envs/plotting.yaml has no pytorch: importing and using what the figure rules use must not
    load it."""
    import subprocess
    import sys

    code = (
        "import sys; import multihead_icl.stages, multihead_icl.plots, multihead_icl.verdicts, "
        "multihead_icl.report;"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
