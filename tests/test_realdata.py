"""Real-data prompts from scikit-learn's bundled diabetes table: the registry, the table, the row
split, the sampler, and the wiring into TaskSpec, the config and the evaluation set."""

import copy

import numpy as np
import pytest
import torch
import yaml
from conftest import SCHEMA

from multihead_icl.config import ConfigError, load_schema, load_suite
from multihead_icl.data import PromptSampler, TaskSpec, make_sampler, sample_eval_set
from multihead_icl.realdata import (
    REAL_DATASETS,
    RealDataSampler,
    RowDraw,
    load_table,
    split_rows,
)

L = 12
SPEC = TaskSpec.from_params({"data": "diabetes", "tasks": 2, "context_length": L})
DIABETES = REAL_DATASETS["diabetes"]


def gen(seed):
    return torch.Generator().manual_seed(seed)


def test_the_registry_describes_two_disjoint_tasks_of_the_diabetes_table():
    assert DIABETES.task_dims == (4, 5) and DIABETES.dim == 9 and DIABETES.num_tasks == 2
    assert DIABETES.targets == ("progression", "s2")
    assert DIABETES.features == ("age", "sex", "bmi", "bp", "s1", "s3", "s4", "s5", "s6")
    used = [*DIABETES.features, *DIABETES.targets]
    assert len(set(used)) == len(used)  # no column is both a feature and a target, or used twice
    assert "Least angle regression" in DIABETES.citation
    assert DIABETES.split_size("train") + DIABETES.split_size("eval") == DIABETES.rows == 442


def test_the_schema_offers_synthetic_and_every_registered_dataset():
    data = yaml.safe_load(SCHEMA.read_text())["$defs"]["run_parameters"]["properties"]["data"]
    assert tuple(data["enum"]) == ("synthetic", *REAL_DATASETS)
    assert data["default"] == "synthetic"


def test_the_table_is_standardised_over_all_rows():
    table = load_table("diabetes")
    assert table.x.shape == (442, 9) and table.y.shape == (442, 2)
    for columns in (table.x, table.y):
        np.testing.assert_allclose(columns.mean(0), 0.0, atol=1e-12)
        np.testing.assert_allclose(columns.std(0), 1.0, rtol=1e-12)  # population std (ddof 0)
    assert not table.x.flags.writeable  # shared by every sampler of the process


def test_population_coefficients_are_the_least_squares_fit_on_each_block():
    table = load_table("diabetes")
    mask = SPEC.block_mask().astype(bool)
    assert np.all(table.coef[~mask] == 0)
    for i in range(2):
        block = table.x[:, mask[i]]
        expected = np.linalg.solve(block.T @ block, block.T @ table.y[:, i])
        np.testing.assert_allclose(table.coef[i, mask[i]], expected, rtol=1e-10, atol=1e-12)
        residual = table.y[:, i] - table.x @ table.coef[i]
        assert table.r2[i] == pytest.approx(1.0 - residual.var())
    assert 0.2 < table.r2[0] < 0.6 and table.r2[1] > 0.9  # progression is hard, LDL nearly exact


def test_the_row_split_is_fixed_disjoint_and_covers_the_table():
    train, held_out = split_rows("diabetes", "train"), split_rows("diabetes", "eval")
    assert len(train) == 309 and len(held_out) == 133
    assert not set(train) & set(held_out)
    assert sorted({*train, *held_out}) == list(range(442))
    with pytest.raises(ValueError, match="split"):
        split_rows("diabetes", "test")


def test_a_batch_has_the_shapes_of_the_synthetic_prompts_and_block_coefficients():
    p = make_sampler(SPEC).sample(8, gen(0))
    assert p.x.shape == (8, L, 9) and p.y.shape == (8, L, 2)
    assert p.x_query.shape == (8, 9) and p.y_query.shape == (8, 2) and p.coef.shape == (8, 2, 9)
    assert p.x.dtype == torch.float32
    mask = torch.tensor(SPEC.block_mask(), dtype=torch.bool)
    assert torch.all(p.coef[:, ~mask] == 0)
    assert torch.all(p.coef[:, mask].abs() > 0)  # no population coefficient is exactly zero


def test_dtype_and_context_length_override_work_as_in_prompt_sampler():
    sampler = make_sampler(SPEC, dtype=torch.float64)
    p = sampler.sample(3, gen(0), context_length=30)
    assert p.x.dtype == p.y.dtype == p.coef.dtype == torch.float64 and p.x.shape == (3, 30, 9)
    assert isinstance(sampler, RealDataSampler)
    synthetic = TaskSpec(task_dims=(4, 5), noise_std=0.0, signal=(1.0, 1.0), context_length=L)
    assert isinstance(make_sampler(synthetic), PromptSampler)
    with pytest.raises(ValueError, match="make_sampler"):
        PromptSampler(SPEC)  # the Gaussian sampler refuses a real-data spec


def test_same_seed_same_prompts_other_seed_other_prompts_and_draw_build_is_sample():
    sampler = make_sampler(SPEC)
    a, b, c = (sampler.sample(16, gen(s)) for s in (5, 5, 6))
    for field in ("x", "y", "x_query", "y_query", "coef"):
        torch.testing.assert_close(getattr(a, field), getattr(b, field), rtol=0, atol=0)
    assert not torch.equal(a.x, c.x)
    built = sampler.build(sampler.draw(16, gen(5)))
    for field in ("x", "y", "x_query", "y_query", "coef"):
        torch.testing.assert_close(getattr(built, field), getattr(a, field), rtol=0, atol=0)


def test_prompts_are_rows_of_the_table_with_flipped_covariates():
    sampler = make_sampler(SPEC, dtype=torch.float64)
    draw = sampler.draw(32, gen(1))
    assert isinstance(draw, RowDraw) and draw.rows.shape == (32, L + 1)
    assert set(draw.signs.unique().tolist()) == {-1.0, 1.0}
    p = sampler.build(draw)
    table = load_table("diabetes")
    x = torch.tensor(table.x)[draw.rows] * draw.signs[:, None, :]
    torch.testing.assert_close(torch.cat([p.x, p.x_query[:, None]], 1), x)
    y = torch.tensor(table.y)[draw.rows]  # the targets keep their sign
    torch.testing.assert_close(torch.cat([p.y, p.y_query[:, None]], 1), y)
    # coef is the population fit times the prompt's signs, so <coef_i, x> is the same fit
    torch.testing.assert_close(p.coef, torch.tensor(table.coef)[None] * draw.signs[:, None, :])
    fit = torch.einsum("bld,bid->bli", x, p.coef)
    table_x, table_coef = torch.tensor(table.x), torch.tensor(table.coef)
    unflipped = torch.einsum("bld,id->bli", table_x[draw.rows], table_coef)
    torch.testing.assert_close(fit, unflipped)


def test_sign_flips_hide_the_population_regression_from_the_average_prompt():
    """Averaged over prompts, x_j y_i is ~0 (the signs cancel), though within a prompt it is not:
    a fixed regression cannot be memorised, it must be read from the context."""
    p = make_sampler(SPEC, dtype=torch.float64).sample(4000, gen(2))
    cross = torch.einsum("bld,bli->bid", p.x, p.y) / L  # per-prompt covariance (B, I, d)
    bmi, s1 = 2, 4  # the strongest covariate of each task
    averaged = cross.mean(0)
    within = cross.abs().mean(0)
    assert within[0, bmi] > 0.4 and within[1, s1] > 0.4
    assert torch.all(averaged.abs() < 0.05), averaged
    assert torch.all(averaged.abs() < within / 8)


def test_rows_within_a_prompt_are_distinct_and_splits_are_disjoint():
    train = make_sampler(SPEC, "train").draw(200, gen(3), context_length=308)
    held_out = make_sampler(SPEC, "eval").draw(200, gen(3), context_length=132)
    for draw in (train, held_out):
        ordered = draw.rows.sort(dim=1).values
        assert torch.all(ordered[:, 1:] != ordered[:, :-1])  # no row twice in a prompt
    train_rows, held_out_rows = (set(d.rows.unique().tolist()) for d in (train, held_out))
    assert train_rows == set(split_rows("diabetes", "train").tolist())  # every row, L + 1 = 309
    assert held_out_rows == set(split_rows("diabetes", "eval").tolist())
    assert not train_rows & held_out_rows


def test_a_context_longer_than_the_split_raises_naming_context_length():
    with pytest.raises(ValueError, match=r"context_length = 133 .*'eval'.* 133"):
        make_sampler(SPEC, "eval").draw(2, gen(0), context_length=133)
    make_sampler(SPEC, "train").draw(2, gen(0), context_length=133)  # the training split has 309


def test_task_spec_from_params_takes_the_blocks_from_the_registry():
    spec = TaskSpec.from_params({"data": "diabetes", "tasks": 2, "noise_std": 0.7, "signal": 3})
    assert spec.task_dims == (4, 5) and spec.signal == (1.0, 1.0) and spec.data == "diabetes"
    assert spec.noise_std == 0.0 and not spec.query_noise and spec.risk_floor == 0.0
    with pytest.raises(ValueError, match="tasks = 3"):
        TaskSpec.from_params({"data": "diabetes", "tasks": 3})
    with pytest.raises(ValueError, match="rotate"):
        TaskSpec.from_params({"data": "diabetes", "tasks": 2, "rotate": True})
    with pytest.raises(ValueError, match="unknown real dataset"):
        TaskSpec(task_dims=(4, 5), noise_std=0, signal=(1, 1), context_length=5, data="iris")


SCHEMA_DICT = load_schema(SCHEMA)
REAL = {
    "defaults": {"data": "diabetes", "tasks": 2, "context_length": 20},
    "experiments": {"e": {"readout": "ablation", "base": {"heads": 2}}},
}


def with_base(**base):
    config = copy.deepcopy(REAL)
    config["experiments"]["e"]["base"].update(base)
    return config


@pytest.mark.parametrize(
    "base,message",
    [
        ({"tasks": 3}, "experiments.e.base.tasks: data = diabetes has 2 tasks, got 3"),
        ({"rotate": True}, "experiments.e.base.rotate: data = diabetes needs rotate false"),
        ({"target": "tanh"}, "experiments.e.base.target: data = diabetes"),
        ({"input_dim": 9}, "experiments.e.base.input_dim: data = diabetes fixes the blocks"),
        ({"context_length": 133}, "experiments.e.base.context_length: a prompt of 133"),
        ({"eval_lengths": [200]}, "experiments.e.base.eval_lengths: a prompt of 200"),
        ({"data": "iris"}, "experiments.e.base.data: 'iris' is not one of"),
    ],
)
def test_config_refuses_what_does_not_apply_to_real_data(base, message):
    with pytest.raises(ConfigError) as info:
        load_suite(with_base(**base), SCHEMA_DICT)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_config_gives_real_data_its_own_evaluation_set_and_no_flow():
    from multihead_icl.config import flow_applies

    real = load_suite(REAL, SCHEMA_DICT)
    synthetic = copy.deepcopy(REAL)
    synthetic["defaults"]["data"] = "synthetic"
    synthetic = load_suite(synthetic, SCHEMA_DICT)
    (real_id,), (synthetic_id,) = real.datasets, synthetic.datasets
    assert real_id.startswith("I2-d4x5-L20-") and real_id != synthetic_id
    assert real.datasets[real_id]["data"] == "diabetes"
    assert not flow_applies(real.runs["e/base"]) and flow_applies(synthetic.runs["e/base"])


def test_the_evaluation_set_uses_held_out_rows_only_and_is_reproducible():
    table = load_table("diabetes")
    held_out = torch.tensor(np.abs(table.x[split_rows("diabetes", "eval")]))
    training = torch.tensor(np.abs(table.x[split_rows("diabetes", "train")]))
    eval_set = sample_eval_set(SPEC, 50, seed=4)
    again = sample_eval_set(SPEC, 50, seed=4)
    torch.testing.assert_close(eval_set.x, again.x, rtol=0, atol=0)
    assert not torch.equal(eval_set.x, sample_eval_set(SPEC, 50, seed=5).x)
    # every row of every prompt, up to its signs, is a held-out row and no training row
    rows = torch.cat([eval_set.x, eval_set.x_query[:, None]], 1).reshape(-1, 9).abs().double()

    def nearest(table_rows):
        return (rows[:, None] - table_rows[None]).abs().amax(-1).amin(1)  # sup-norm distance

    assert nearest(held_out).max() < 1e-6  # float32 rounding of the standardised values
    assert nearest(training).min() > 1e-3
