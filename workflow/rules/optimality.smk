# Optimality (issue 5, claims C5 and C6): for each experiment with `optimality: true`, the trained
# limit of every configuration against the best attention in its class, the best single head, one
# head per task, and the baselines (Bayes, OLS, linear attention, debiased GD). Reads train.nc, and
# the runs' flow.nc where they have one (the exact flow's end state).


FINAL_OUTPUTS["optimality"] = expand(
    "results/optimality/{experiment}.nc", experiment=OPTIMALITY_EXPERIMENTS
)


rule optimality:
    input:
        train=optimality_train_files,
        flows=lambda wildcards: [FLOW_FILE[run] for run in optimality_flow_runs(wildcards)],
    output:
        optimality="results/optimality/{experiment}.nc",
    log:
        "logs/optimality/{experiment}.log",
    benchmark:
        "benchmarks/optimality/{experiment}.tsv"
    wildcard_constraints:
        experiment="|".join(OPTIMALITY_EXPERIMENTS) or "(?!)",
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=30,
    params:
        runs=optimality_runs,
        flow_runs=lambda wildcards: optimality_flow_runs(wildcards),
        settings=SUITE.config["optimality"],
    message:
        "Best in class, baselines and optimality ratios of experiment {wildcards.experiment}"
    script:
        "../scripts/optimality.py"
