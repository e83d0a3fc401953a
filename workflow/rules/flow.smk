# The exact spectral flow (issue 12): for the runs of the experiments in the config's `flow`
# section, gradient flow on the population risk from the run's omega(0), mu(0) to a long horizon,
# its Monte-Carlo error bar and gradient descent at the run's lr (flow.nc).
# FLOW_RUNS, FLOW_FILE and FLOW_JOBS are set in common.smk.
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
        settings={k: v for k, v in SUITE.config["flow"].items() if k != "experiments"},
    message:
        "Exact spectral flow of run {wildcards.run}"
    script:
        "../scripts/flow.py"
