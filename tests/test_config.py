"""Config validation (one-line errors naming key and value) and the expansion of experiments into
runs."""

import copy

import pytest
import yaml
from conftest import ROOT, SCHEMA, run_snakemake

from multihead_icl.config import ConfigError, load_schema, load_suite

SCHEMA_DICT = load_schema(SCHEMA)
GOOD = {
    "defaults": {"tasks": 2, "task_dim": 3},
    "experiments": {
        "sweep": {"base": {"heads": 2}, "grid": {"seed": [0, 1], "context_length": [10, 20]}}
    },
}


def suite(config):
    return load_suite(config, SCHEMA_DICT)


def test_grid_is_a_cartesian_product_with_readable_stable_ids():
    s = suite(GOOD)
    assert list(s.runs) == ["sweep/s0-L10", "sweep/s0-L20", "sweep/s1-L10", "sweep/s1-L20"]
    run = s.runs["sweep/s1-L20"]
    assert (
        run["seed"] == 1 and run["context_length"] == 20 and run["heads"] == 2 and run["tasks"] == 2
    )
    assert run["noise_std"] == 0.3  # schema default filled in
    # runs sharing data parameters share one evaluation set
    assert (
        s.run_dataset["sweep/s0-L10"]
        == s.run_dataset["sweep/s1-L10"]
        != s.run_dataset["sweep/s0-L20"]
    )


def test_adding_a_grid_value_keeps_existing_runs_unchanged():
    bigger = copy.deepcopy(GOOD)
    bigger["experiments"]["sweep"]["grid"]["seed"].append(2)
    before, after = suite(GOOD), suite(bigger)
    assert set(before.runs) < set(after.runs)
    for run_id, run in before.runs.items():
        assert after.runs[run_id] == run and after.run_dataset[run_id] == before.run_dataset[run_id]


def test_experiment_without_grid_and_base_overrides_defaults():
    s = suite({"defaults": {"heads": 5}, "experiments": {"one": {"base": {"heads": 1}}, "two": {}}})
    assert s.runs["one/base"]["heads"] == 1 and s.runs["two/base"]["heads"] == 5


def test_post_training_keys_do_not_reach_training():
    s = suite({"experiments": {"e": {"base": {"eval_lengths": [50]}}}})
    assert "eval_lengths" not in s.train_params("e/base") and s.runs["e/base"]["eval_lengths"] == [
        50
    ]


BAD = [
    ({"experiments": {"e": {"base": {"headz": 2}}}}, "experiments.e.base: unknown key 'headz'"),
    ({"experiments": {"e": {}}, "colour": 1}, "unknown key 'colour'"),
    (
        {"experiments": {"e": {"base": {"heads": "three"}}}},
        "experiments.e.base.heads: 'three' is not of type 'integer'",
    ),
    (
        {"experiments": {"e": {"base": {"heads": 0}}}},
        "experiments.e.base.heads: 0 is less than the minimum of 1",
    ),
    (
        {"experiments": {"e": {"base": {"tasks": 0}}}},
        "experiments.e.base.tasks: 0 is less than the minimum of 1",
    ),
    ({"experiments": {"e": {"base": {"lr": -0.1}}}}, "experiments.e.base.lr: -0.1"),
    ({"experiments": {"e": {"base": {"batch_size": 0}}}}, "experiments.e.base.batch_size: 0"),
    ({"defaults": {"context_length": -5}, "experiments": {"e": {}}}, "defaults.context_length: -5"),
    (
        {"experiments": {"e": {"base": {"tasks": 2, "task_dim": [2, 3, 4]}}}},
        "task_dim: [2, 3, 4] lists 3 values for tasks = 2",
    ),
    (
        {"experiments": {"e": {"grid": {"seed": 3}}}},
        "experiments.e.grid.seed: grid values must be lists, got 3",
    ),
    (
        {"experiments": {"e": {"grid": {"heads": [2, 0]}}}},
        "experiments.e.grid(H0).heads: 0 is less than the minimum of 1",
    ),
    (
        {"experiments": {"e": {"base": {"model": "vision"}}}},
        "experiments.e.base.model: 'vision' is not one of",
    ),
    (
        {"experiments": {"e": {"base": {"model": "transformer"}}}},
        "experiments.e.readout: run e/base (model 'transformer', data 'synthetic') has no "
        "spectral read-out; set experiments.e.readout: ablation",
    ),
    (
        {
            "experiments": {
                "e": {"readout": "ablation", "base": {"model": "transformer", "width": 10}}
            }
        },
        "experiments.e.base.width: 10 is not a multiple of heads = 3",
    ),
    (
        {"experiments": {"e": {"readout": "ablation", "optimality": True}}},
        "experiments.e.optimality: the best-in-class search reads the reduced view",
    ),
    (
        {"experiments": {"e": {"base": {"data": "diabetes", "tasks": 2, "context_length": 20}}}},
        "experiments.e.readout: run e/base (model 'reduced', data 'diabetes') has no spectral",
    ),
    (
        {
            "experiments": {
                "e": {"readout": "ablation", "base": {"model": "transformer", "layers": 0}}
            }
        },
        "experiments.e.base.layers: 0 is less than the minimum of 1",
    ),
    (
        {"experiments": {"e": {"base": {"init": "orthogonal"}}}},
        "experiments.e.base.init: 'orthogonal' is not one of",
    ),
    (
        {"experiments": {"e": {"base": {"heads": 2, "tasks": 2, "init_mu": [[1, 2]]}}}},
        "init_mu: must be 2 lists (heads) of 2 numbers",
    ),
    (
        {"experiments": {"e": {"base": {"model": "full", "eval_lengths": [50]}}}},
        "eval_lengths: length generalisation needs model = reduced or linear",
    ),
    ({"experiments": {}}, "experiments: {} should be non-empty"),
    (
        {"experiments": {"e": {"points": [{"lr": 0.1}], "grid": {"lr": [0.2]}}}},
        "experiments.e: lr given in both `points` and `grid`",
    ),
]


@pytest.mark.parametrize("config,message", BAD, ids=[m[:40] for _, m in BAD])
def test_bad_configs_give_one_line_naming_key_and_value(config, message):
    with pytest.raises(ConfigError) as info:
        suite(config)
    text = str(info.value)
    assert message in text, text
    assert "\n" not in text


@pytest.mark.slow
def test_workflow_stops_on_bad_config_without_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump({"experiments": {"e": {"base": {"tasks": 2, "task_dim": [1, 2, 3]}}}})
    )
    proc = run_snakemake(tmp_path / "work", "-n", config=bad, check=False)
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert (
        "Config error: experiments.e.base.task_dim: [1, 2, 3] lists 3 values for tasks = 2"
        in output
    )
    assert "Traceback" not in output and 'File "' not in output
    assert not (tmp_path / "work" / "results").exists()


def test_shipped_configs_are_valid():
    for path in [ROOT / "config.yaml", *sorted((ROOT / "config").glob("*.yaml"))]:
        s = suite(yaml.safe_load(path.read_text()))
        assert s.runs, path


def test_runs_that_train_identically_share_one_owner():
    """Training parameters equal (evaluation-only keys aside, which do not reach training) = one
    training job; the first such run owns it, and a different evaluation set is a different run."""
    schema = load_schema(SCHEMA)
    config = {
        "defaults": {"steps": 10},
        "experiments": {
            "a": {"grid": {"seed": [0, 1]}},
            "b": {"grid": {"heads": [3]}},
            "c": {"base": {"eval_lengths": [8]}},
            "d": {"base": {"eval_prompts": 64}},
        },
    }
    suite = load_suite(config, schema)
    assert suite.run_owner["a/s0"] == "a/s0" and suite.run_owner["a/s1"] == "a/s1"
    assert suite.run_owner["b/H3"] == "a/s0"  # heads 3 is the default: the same training as a/s0
    assert suite.run_owner["c/base"] == "a/s0"  # eval_lengths is used after training only
    assert suite.run_owner["d/base"] == "d/base"  # another evaluation set: its train.nc differs


def test_comparison_settings_name_known_roles_and_existing_experiments_once():
    from multihead_icl.report import comparison_settings, plan_settings, setting_experiments

    experiments = {"a": ["a/base"], "b": ["b/s0", "b/s1"], "c": ["c/base"]}
    got = comparison_settings(
        {"other": {"label": "Other", "allocation": ["b", "c"], "winner": "b"}}, experiments
    )
    assert got["other"]["label"] == "Other" and got["other"]["optimality"] is None
    assert setting_experiments(got["other"]) == ["b", "c"]
    merged = plan_settings({"allocation": "a", "winner": None}, got)
    assert merged["allocation"] == ["a", "b", "c"] and merged["winner"] == ["b"]
    with pytest.raises(ValueError, match=r"settings\.other: unknown key 'alocation'"):
        comparison_settings({"other": {"alocation": "b"}}, experiments)
    with pytest.raises(ValueError, match=r"settings\.other\.winner: 'zz' is not an experiment"):
        comparison_settings({"other": {"winner": "zz"}}, experiments)
    with pytest.raises(ValueError, match="already belongs to setting 'one'"):
        comparison_settings({"one": {"allocation": "b"}, "two": {"winner": "b"}}, experiments)


def test_settings_classes_take_every_field_from_the_config_section():
    """Defaults live in the schema only: no settings class may carry its own (a second source
    that could drift), and from_config/from_mapping fill the schema's under what is given."""
    from dataclasses import MISSING, fields

    from multihead_icl.config import with_defaults
    from multihead_icl.flow import FlowSettings
    from multihead_icl.optimality import MeasureSettings, SearchSettings
    from multihead_icl.spectral_settings import SpectralSettings, SurrogateCheckSettings

    for cls in (
        SpectralSettings,
        SurrogateCheckSettings,
        SearchSettings,
        MeasureSettings,
        FlowSettings,
    ):
        with_default = [
            f.name
            for f in fields(cls)
            if f.default is not MISSING or f.default_factory is not MISSING
        ]
        assert not with_default, (cls.__name__, with_default)
    assert SpectralSettings.from_config({"clean_purity": 0.8}).clean_purity == 0.8
    spectral = with_defaults("spectral")
    assert SpectralSettings.from_config().n_eff_prompts == spectral["n_eff_prompts"]
    assert SurrogateCheckSettings.from_config().prompts == spectral["surrogate_check"]["prompts"]
    assert FlowSettings.from_mapping({"samples": 64}).samples == 64
    assert SearchSettings.from_mapping().restarts == with_defaults("optimality")["restarts"]


def test_loading_fills_every_settings_section_and_keeps_what_the_user_wrote(tmp_path):
    from multihead_icl.config import SETTINGS_SECTIONS, load_schema, load_suite

    config = {
        "defaults": {"steps": 10},
        "experiments": {"a": {}},
        "flow": {"samples": 64},
        "figures": {"allocation": "a"},
    }
    suite = load_suite(config, load_schema())
    assert suite.config["flow"]["samples"] == 64 and "horizon" in suite.config["flow"]
    assert suite.config["verdicts"]["purity"] > 0 and suite.config["figures"]["format"] == "svg"
    assert suite.given["figures"] == {"allocation": "a"} and suite.given["verdicts"] == {}
    assert set(SETTINGS_SECTIONS) <= set(suite.config)


def test_the_schema_ships_inside_the_package():
    """The CLI and the workflow find the schema through the package, so an installed wheel (no
    repository around it) still validates configs: the file is package data, not a repo path."""
    import tomllib
    from importlib.resources import files

    from multihead_icl.config import SCHEMA_PATH

    assert files("multihead_icl").joinpath("config.schema.yaml").is_file()
    assert SCHEMA_PATH.parent.name == "multihead_icl"
    pyproject = tomllib.loads((SCHEMA_PATH.parents[2] / "pyproject.toml").read_text())
    assert SCHEMA_PATH.name in pyproject["tool"]["setuptools"]["package-data"]["multihead_icl"]


def test_a_transformer_runs_from_pytorch_init_and_is_read_out_by_ablation():
    """The transformer has one init, PyTorch's default, and its runs record it; its experiment's
    runs get ablation.nc, not spectral.nc, and stay out of the paper's claims (Layout.runs)."""
    from multihead_icl.layout import Layout

    config = {
        "defaults": {"tasks": 2, "task_dim": 2, "heads": 2, "init": "decomposable"},
        "experiments": {
            "one_layer": {},
            "practical": {"readout": "ablation", "grid": {"model": ["reduced", "transformer"]}},
        },
        "figures": {"practical": ["practical"]},
    }
    loaded = suite(config)
    assert loaded.runs["practical/transformer"]["init"] == "pytorch"
    assert loaded.runs["practical/reduced"]["init"] == "decomposable"
    assert loaded.ablation_experiments == ["practical"]
    layout = Layout(loaded)
    assert layout.runs == ["one_layer/base"]
    assert layout.ablation_runs == ["practical/reduced", "practical/transformer"]
    assert layout.practical_runs() == layout.ablation_runs
    plan = layout.figure_plan()
    practical = [spec for spec in plan if spec.kind == "practical"]
    assert [spec.runs for spec in practical] == [tuple(layout.ablation_runs)]
    convergence = next(spec for spec in plan if spec.kind == "convergence")
    assert convergence.runs == ("one_layer/base",)
    assert layout.verdict_inputs()["ablation"] == [
        "results/runs/practical/reduced/ablation.nc",
        "results/runs/practical/transformer/ablation.nc",
    ]
    with pytest.raises(ValueError, match="figures.practical: experiment 'one_layer' needs readout"):
        Layout(suite({**config, "figures": {"practical": ["one_layer"]}})).figure_plan()


def test_points_are_crossed_with_the_grid_and_named_by_their_first_key():
    config = {
        "experiments": {
            "e": {
                "points": [{"model": "reduced"}, {"model": "linear", "lr": 0.1}],
                "grid": {"seed": [0, 1]},
            },
            "f": {"points": [{"lr": 0.1, "heads": 2}, {"lr": 0.1, "heads": 4}]},
        }
    }
    loaded = suite(config)
    assert loaded.experiments["e"] == ["e/reduced-s0", "e/reduced-s1", "e/linear-s0", "e/linear-s1"]
    assert loaded.runs["e/linear-s1"]["lr"] == 0.1 and loaded.runs["e/reduced-s0"]["lr"] == 0.5
    assert loaded.experiments["f"] == ["f/lr0.1-H2", "f/lr0.1-H4"]  # the first key is shared
