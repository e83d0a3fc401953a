# The exact spectral flow (issue 12): for the runs of the experiments in the config's `flow`
# section, gradient flow on the population risk from the run's omega(0), mu(0) to a long horizon,
# its Monte-Carlo error bar and gradient descent at the run's lr (flow.nc).
from multihead_icl.config import flow_applies, section_settings
from multihead_icl.identity import training_identity

FLOW_SETTINGS = section_settings(
    SUITE.config, load_schema(workflow.source_path("../schemas/config.schema.yaml")), "flow"
)
FLOW_RUNS = [
    run
    for name in FLOW_SETTINGS["experiments"]
    for run in SUITE.experiments.get(name, [])
    if flow_applies(SUITE.runs[run])
]
# Runs that train identically (allocation/s0 and heads/H3, say) share one flow: the first one's.
FLOW_FILE = {}
_flow_owner = {}
for _run in FLOW_RUNS:
    _owner = _flow_owner.setdefault(training_identity(SUITE.runs[_run]), _run)
    FLOW_FILE[_run] = f"results/runs/{_owner}/flow.nc"
FLOW_JOBS = list(_flow_owner.values())
FINAL_OUTPUTS["flow"] = expand("results/runs/{run}/flow.nc", run=FLOW_JOBS)


rule flow:
    input:
        spectral="results/runs/{run}/spectral.nc",
    output:
        flow="results/runs/{run}/flow.nc",
    log:
        "logs/flow/{run}.log",
    benchmark:
        "benchmarks/flow/{run}.tsv"
    wildcard_constraints:
        run="|".join(re.escape(r) for r in FLOW_JOBS) or "(?!)",
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        settings={k: v for k, v in FLOW_SETTINGS.items() if k != "experiments"},
    message:
        "Exact spectral flow of run {wildcards.run}"
    script:
        "../scripts/flow.py"
