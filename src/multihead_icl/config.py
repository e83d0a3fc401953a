"""The suite configuration: validation with one-line errors, and experiments expanded into runs.

A config has global ``defaults`` and named ``experiments``, each a ``base`` plus a ``grid`` of
lists; its runs are the cartesian product of the grid over base over defaults. A run's id is
``<experiment>/<grid point>`` built from the grid keys only (``allocation/H3-s0``), so adding a
value to a grid adds runs and leaves every existing id, and so every existing result, alone.
Runs that share their data parameters share one evaluation set, named by a hash of those.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import itertools
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .realdata import REAL_DATASETS
from .tasks import task_dims_of

# keys that fix the law of the prompts and the evaluation set (a change makes a new dataset)
DATA_KEYS = (
    "data",
    "tasks",
    "task_dim",
    "input_dim",
    "noise_std",
    "query_noise",
    "signal",
    "signal_per",
    "context_length",
    "rotate",
    "basis_seed",
    "target",
    "eval_prompts",
    "eval_seed",
)
# keys only used after training (a change must not retrain)
POST_TRAINING_KEYS = ("eval_lengths",)
# short names for run ids; keys not listed appear in full
ID_ABBREVIATIONS = {
    "heads": "H",
    "tasks": "I",
    "task_dim": "d",
    "context_length": "L",
    "seed": "s",
    "data_stream": "stream",
    "noise_std": "noise",
    "init_scale": "init",
    "batch_size": "B",
    "signal": "kappa",
    "model": "",
    "optimizer": "",
    "init": "",
    "target": "",
}


# The one source of every config key's meaning, bounds and default; it ships inside the package so
# that the CLI and the workflow find it wherever the package is installed.
SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")
# top-level sections of settings (not runs): each is filled with its schema defaults on loading
SETTINGS_SECTIONS = ("optimality", "flow", "spectral", "figures", "verdicts")


class ConfigError(ValueError):
    """A bad configuration value; the message is one line naming the key and the value."""


def _path(parts: Iterator[Any]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<config>"


def _one_line(error: jsonschema.ValidationError, prefix: str) -> str:
    where = _path(itertools.chain([prefix] if prefix else [], error.absolute_path))
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = (
            sorted(set(error.instance) - set(allowed)) if isinstance(error.instance, dict) else []
        )
        hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
        return f"{where}: unknown key {', '.join(repr(e) for e in extra)}{hint}"
    if error.validator == "oneOf":
        return (
            f"{where}: {json.dumps(error.instance)} is not valid "
            f"({error.schema.get('description', 'see the schema')})"
        )
    if error.validator == "type" and where.split(".")[-2:-1] == ["grid"]:
        return f"{where}: grid values must be lists, got {json.dumps(error.instance)}"
    return f"{where}: {error.message}"


def _validator_with_defaults(schema: Mapping[str, Any]) -> type:
    """A Draft 2020-12 validator that also fills in ``default`` values (as Snakemake's validate
    does)."""
    base = jsonschema.Draft202012Validator

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from base.VALIDATORS["properties"](validator, properties, instance, schema)

    return jsonschema.validators.extend(base, {"properties": set_defaults})


def load_schema(path: str | Path = SCHEMA_PATH) -> dict[str, Any]:
    with open(path) as handle:
        return yaml.safe_load(handle)


@functools.cache
def _package_schema() -> dict[str, Any]:
    return load_schema(SCHEMA_PATH)


def with_defaults(section: str, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A settings section (``flow``, ``spectral``, ...) with every default of the package schema
    filled in at every depth, ``given`` first; the only place Python learns a setting's default."""
    schema = _package_schema()
    filled = copy.deepcopy(dict(given or {}))
    _check(filled, schema["properties"][section], schema, section, defaults=True)
    return filled


@functools.cache
def _run_defaults() -> dict[str, Any]:
    schema = _package_schema()
    filled: dict[str, Any] = {}
    _check(filled, schema["$defs"]["run_parameters"], schema, "defaults", defaults=True)
    return filled


def run_defaults() -> dict[str, Any]:
    """Every run parameter at its schema default (for code that is handed partial parameters)."""
    return copy.deepcopy(_run_defaults())


def complete_run(params: Mapping[str, Any]) -> dict[str, Any]:
    """A run's parameters with the schema's defaults under them (files written by the pipeline
    always carry every key; tests and notebooks may not)."""
    return {**run_defaults(), **params}


def _check(
    instance: Any, schema: Mapping[str, Any], root: Mapping[str, Any], prefix: str, defaults: bool
) -> None:
    resolver_schema = dict(schema)
    resolver_schema.setdefault("$defs", root.get("$defs", {}))
    cls = _validator_with_defaults(resolver_schema) if defaults else jsonschema.Draft202012Validator
    errors = sorted(
        cls(resolver_schema).iter_errors(instance),
        key=lambda e: (len(e.absolute_path), str(e.absolute_path)),
    )
    if errors:
        raise ConfigError(_one_line(errors[0], prefix))


@dataclass
class Suite:
    """The validated config: resolved runs by id and evaluation datasets by id."""

    config: dict[str, Any]
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    datasets: dict[str, dict[str, Any]] = field(default_factory=dict)
    run_dataset: dict[str, str] = field(default_factory=dict)
    length_datasets: dict[str, dict[int, str]] = field(default_factory=dict)  # run -> {L': dataset}
    experiments: dict[str, list[str]] = field(default_factory=dict)
    run_owner: dict[str, str] = field(
        default_factory=dict
    )  # run -> the first run that trains identically
    maps: dict[str, dict[str, dict[str, Any]]] = field(
        default_factory=dict
    )  # regime map -> point id -> parameters
    warnings: list[str] = field(default_factory=list)  # odd but harmless settings, one line each
    # experiments read out by head ablation (``readout: ablation``): any model, any data (Q1)
    ablation_experiments: list[str] = field(default_factory=list)
    # the settings sections as the user wrote them (``config`` has the schema's defaults filled in)
    given: dict[str, dict[str, Any]] = field(default_factory=dict)

    def train_params(self, run_id: str) -> dict[str, Any]:
        """What the training job needs: the run minus post-training keys (so those never
        retrain)."""
        return {k: v for k, v in self.runs[run_id].items() if k not in POST_TRAINING_KEYS}


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return format(value, "g")
    if isinstance(value, (list, tuple)):
        return "x".join(_format_value(v) for v in value)
    return str(value)


def run_name(point: Mapping[str, Any]) -> str:
    """Readable id of one grid point, e.g. ``H3-L200-s0``; ``base`` for an experiment without a
    grid."""
    if not point:
        return "base"
    return "-".join(f"{ID_ABBREVIATIONS.get(k, k)}{_format_value(v)}" for k, v in point.items())


def dataset_name(run: Mapping[str, Any]) -> str:
    """Readable and unique: ``I3-d4-L200-<hash of all data parameters>`` (``data`` enters the hash
    only when it is not synthetic, so the ids of synthetic sets stay what they were before it)."""
    data = {k: run[k] for k in DATA_KEYS if not (k == "data" and run[k] == "synthetic")}
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:8]
    dims = task_dims_of(run)
    dim = _format_value(dims if len(set(dims)) > 1 else dims[0])
    return f"I{run['tasks']}-d{dim}-L{run['context_length']}-{digest}"


def _cross_checks(run: Mapping[str, Any], where: str) -> None:
    """Constraints between keys that a JSON schema cannot state."""
    tasks, heads = run["tasks"], run["heads"]
    if run["data"] != "synthetic":
        _real_data_checks(run, where)
    for key in ("task_dim", "signal"):
        value = run[key]
        if isinstance(value, list) and len(value) != tasks:
            raise ConfigError(
                f"{where}.{key}: {json.dumps(value)} lists {len(value)} values for tasks = {tasks}"
            )
    if run["input_dim"] is not None and run["input_dim"] < tasks:
        raise ConfigError(
            f"{where}.input_dim: {run['input_dim']} covariates cannot be split into tasks = "
            f"{tasks} blocks"
        )
    if run["init"] == "pytorch" and run["model"] not in ("full", "transformer"):
        raise ConfigError(
            f"{where}.init: pytorch (nn.Linear's default) needs model = full or transformer, got "
            f"{run['model']!r}"
        )
    if run["model"] == "transformer":
        if run["width"] % heads:
            raise ConfigError(
                f"{where}.width: {run['width']} is not a multiple of heads = {heads} (each head "
                "reads width / heads features)"
            )
    if run["init"] in ("official", "official_random") and heads < tasks:
        raise ConfigError(
            f"{where}.init: {run['init']} gives head h the lead on task h, so it needs heads >= "
            f"tasks, got {heads} < {tasks}"
        )
    for key in ("init_omega", "init_mu"):
        value = run[key]
        if value is not None and (len(value) != heads or any(len(row) != tasks for row in value)):
            raise ConfigError(
                f"{where}.{key}: must be {heads} lists (heads) of {tasks} numbers (tasks), got "
                f"{json.dumps(value)}"
            )
    if run["init"] != "decomposable" and (
        run["init_omega"] is not None or run["init_mu"] is not None
    ):
        raise ConfigError(
            f"{where}.init: init_omega/init_mu need init = decomposable, got {run['init']!r}"
        )
    if run["eval_lengths"] and run["model"] in ("full", "transformer"):
        # train.nc keeps the reduced view (W, U) of a full model, which is not its whole predictor
        raise ConfigError(
            f"{where}.eval_lengths: length generalisation needs model = reduced or linear, got "
            f"{run['model']!r}"
        )


def _real_data_checks(run: Mapping[str, Any], where: str) -> None:
    """A real dataset fixes its tasks and blocks and shows them as measured (docs/science.md §10);
    a prompt needs L + 1 distinct rows of the evaluation split."""
    dataset = REAL_DATASETS[run["data"]]
    if run["tasks"] != dataset.num_tasks:
        raise ConfigError(
            f"{where}.tasks: data = {dataset.name} has {dataset.num_tasks} tasks, got "
            f"{run['tasks']}"
        )
    if run["input_dim"] is not None:
        raise ConfigError(
            f"{where}.input_dim: data = {dataset.name} fixes the blocks "
            f"{list(dataset.task_dims)}; input_dim must be null, got {run['input_dim']}"
        )
    if run["rotate"]:
        raise ConfigError(f"{where}.rotate: data = {dataset.name} needs rotate false, got true")
    if run["target"] != "linear":
        raise ConfigError(
            f"{where}.target: data = {dataset.name} has its measured targets, so target must be "
            f"linear, got {run['target']!r}"
        )
    rows = dataset.split_size("eval")
    longest = max([run["context_length"], *run["eval_lengths"]])
    if longest + 1 > rows:
        key = "context_length" if longest == run["context_length"] else "eval_lengths"
        raise ConfigError(
            f"{where}.{key}: a prompt of {longest} context pairs needs {longest + 1} distinct "
            f"rows, but the evaluation split of {dataset.name} has {rows}"
        )


def _walk(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _walk(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, (list, tuple)):
        for k, item in enumerate(value):
            yield from _walk(item, f"{path}[{k}]")
    else:
        yield path, value


def check_finite(config: Mapping[str, Any]) -> None:
    """Every number of the config is finite (YAML's .nan and .inf pass a schema's bounds)."""
    for path, value in _walk(config, ""):
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{path}: must be a finite number, got {value}")


def load_suite(config: Mapping[str, Any], schema: Mapping[str, Any]) -> Suite:
    """Validate ``config`` (filling defaults) and expand it; raises ``ConfigError`` with one
    line."""
    config = copy.deepcopy(dict(config))
    check_finite(config)
    _check(config, schema, schema, "", defaults=False)
    for key, sub in schema["properties"].items():  # top-level defaults only: an experiment's
        if "default" in sub and key not in config:  # `base` must not be padded with run defaults
            config[key] = copy.deepcopy(sub["default"])
    given_sections = {key: copy.deepcopy(config.get(key) or {}) for key in SETTINGS_SECTIONS}
    for key in SETTINGS_SECTIONS:  # settings sections: every default, so rules see every value
        _check(config[key], schema["properties"][key], schema, key, defaults=True)
    run_schema = schema["$defs"]["run_parameters"]
    given_defaults = set(
        config["defaults"]
    )  # keys the user wrote (before the schema's defaults fill in)
    _check(config["defaults"], run_schema, schema, "defaults", defaults=True)
    suite = Suite(config=config, given=given_sections)
    owners: dict[
        str, str
    ] = {}  # training parameters (JSON) -> the first run with them: it trains, the others copy
    for experiment, spec in config["experiments"].items():
        base = {**config["defaults"], **spec.get("base", {})}
        grid = spec.get("grid", {})
        listed = spec.get("points") or [{}]
        twice = set(grid) & set().union(*listed)
        if twice:
            raise ConfigError(
                f"experiments.{experiment}: {', '.join(sorted(twice))} given in both `points` and "
                "`grid` (a point would be overridden); give each key in one of them"
            )
        given = given_defaults | set(spec.get("base", {})) | set(grid) | set().union(*listed)
        points = _grid_points(
            experiment, base, grid, run_schema, schema, given, suite.warnings, listed
        )
        if spec.get("kind", "runs") == "regime_map":
            suite.maps[experiment] = _map_points(points)
            continue
        suite.experiments[experiment] = []
        for name, _where, run in points:
            run_id = f"{experiment}/{name}"
            if run_id in suite.runs:
                raise ConfigError(
                    f"experiments.{experiment}.grid: two grid points give the same run id "
                    f"{run_id!r}"
                )
            data_id = dataset_name(run)
            suite.runs[run_id] = run
            suite.run_dataset[run_id] = data_id
            suite.datasets[data_id] = {k: run[k] for k in DATA_KEYS}
            suite.experiments[experiment].append(run_id)
            owners.setdefault(
                json.dumps(suite.train_params(run_id), sort_keys=True, default=str), run_id
            )
            suite.run_owner[run_id] = owners[
                json.dumps(suite.train_params(run_id), sort_keys=True, default=str)
            ]
            if run["eval_lengths"]:  # evaluation sets of the same law at other context lengths
                suite.length_datasets[run_id] = {}
                for length in sorted({run["context_length"], *run["eval_lengths"]}):
                    other = {**run, "context_length": length}
                    other_id = dataset_name(other)
                    suite.datasets[other_id] = {k: other[k] for k in DATA_KEYS}
                    suite.length_datasets[run_id][length] = other_id
    for experiment, spec in config["experiments"].items():
        if experiment not in suite.experiments:
            continue
        if spec.get("readout", "spectral") == "ablation":
            suite.ablation_experiments.append(experiment)
            if spec.get("optimality", False):
                raise ConfigError(
                    f"experiments.{experiment}.optimality: the best-in-class search reads the "
                    "reduced view of synthetic runs; an experiment with readout ablation has none"
                )
            continue
        for run_id in suite.experiments[experiment]:
            run = suite.runs[run_id]
            if run["model"] == "transformer" or run.get("data", "synthetic") != "synthetic":
                raise ConfigError(
                    f"experiments.{experiment}.readout: run {run_id} (model {run['model']!r}, data "
                    f"{run.get('data', 'synthetic')!r}) has no spectral read-out; set "
                    f"experiments.{experiment}.readout: ablation"
                )
    for experiment, spec in config["experiments"].items():
        if spec.get("optimality", False) and experiment in suite.experiments:
            for run_id in suite.experiments[experiment]:  # the search integrates a linear target
                run = suite.runs[run_id]  # of the Gaussian law
                if run["target"] != "linear" or run["data"] != "synthetic":
                    raise ConfigError(
                        f"experiments.{experiment}.optimality: needs target linear and synthetic "
                        f"data, run {run_id} has target {run['target']!r}, data {run['data']!r}"
                    )
    return suite


MAP_INIT_KEYS = ("init_lead", "seed")  # grid keys that vary the init within a cell of a regime map
MAP_INITS = ("decomposable", "official", "official_random")


def _grid_points(
    experiment: str,
    base: Mapping[str, Any],
    grid: Mapping[str, list],
    run_schema,
    schema,
    given: set[str],
    warnings: list[str],
    listed: list[Mapping[str, Any]] = ({},),
) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(name, where, parameters) of every grid point of an experiment, validated (defaults filled):
    each of the ``listed`` points (the experiment's ``points``) crossed with the grid; ``given`` are
    the keys the user wrote for it; what is odd but harmless goes to ``warnings``."""
    keys = list(grid)
    # a listed point is named by its first key when that tells the points apart, else by all
    first = [run_name(dict(list(p.items())[:1])) if p else "" for p in listed]
    short = len(set(first)) == len(first)
    for (index, listed_point), values in itertools.product(
        enumerate(listed), itertools.product(*(grid[k] for k in keys))
    ):
        swept = dict(zip(keys, values))
        point = {**listed_point, **swept}
        name = (
            "-".join(n for n in (first[index], run_name(swept) if swept else "") if n) or "base"
            if short
            else run_name(point)
        )
        where = f"experiments.{experiment}" + (f".grid({name})" if point else ".base")
        params = {**base, **point}
        _check(params, run_schema, schema, where, defaults=True)
        if params["model"] == "transformer":  # it has one init, PyTorch's: its runs record it
            params["init"] = "pytorch"
        _cross_checks(params, where)
        if "record_points" in given and params["record_points"] > params["steps"]:
            warnings.append(
                f"{where}.record_points: {params['record_points']} records asked for steps = "
                f"{params['steps']}; every step is recorded ({params['steps'] + 1} records)"
            )
        yield name, where, params


def _map_points(
    grid_points: Iterator[tuple[str, str, dict[str, Any]]],
) -> dict[str, dict[str, Any]]:
    """The points of a regime map (``_grid_points`` of its experiment): each grid point's
    parameters, checked like a run's and for an exact flow from a decomposable init."""
    points = {}
    for name, where, params in grid_points:
        if not flow_applies(params):
            raise ConfigError(
                f"{where}: a regime map needs model reduced or linear, a linear target and "
                f"synthetic data, got model {params['model']!r}, target {params['target']!r}, "
                f"data {params['data']!r}"
            )
        if params["init"] not in MAP_INITS:
            raise ConfigError(
                f"{where}.init: a regime map starts from a decomposable init "
                f"({', '.join(MAP_INITS)}), got {params['init']!r}"
            )
        points[name] = params
    return points


def flow_applies(params: Mapping[str, Any]) -> bool:
    """The exact spectral flow exists for the reduced and linear models with a linear target (any
    init: it starts from the read-out omega(0), mu(0), the decomposable part of W(0), U(0)), on
    the Gaussian prompts whose law it integrates (not on a real dataset's)."""
    params = complete_run(params)
    return (
        str(params["model"]) in ("reduced", "linear")
        and str(params["target"]) == "linear"
        and str(params["data"]) == "synthetic"
    )


class _StrictLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a mapping with a key given twice (PyYAML keeps the last
    silently)."""


def _no_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if (
            key_node.tag == "tag:yaml.org,2002:merge"
        ):  # `<<: *anchor` merges; its keys may be overridden
            continue
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(
                f"{Path(str(node.start_mark.name))}: key {key!r} is given twice (lines "
                f"{seen[key] + 1} and {key_node.start_mark.line + 1}); "
                "YAML keeps only the last"
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def load_yaml_strictly(path: str | Path) -> Any:
    """Read a config file, refusing duplicate keys (one line naming the file, key and lines)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such config file")
    with open(path) as handle:
        try:
            return yaml.load(handle, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark is not None else ""
            raise ConfigError(
                f"{path}{where}: not valid YAML: {getattr(error, 'problem', error)}"
            ) from None


def load_suite_file(config_path: str | Path, schema_path: str | Path = SCHEMA_PATH) -> Suite:
    return load_suite(load_yaml_strictly(config_path) or {}, load_schema(schema_path))
