# Head ablation (Q1): each run of an experiment with `readout: ablation` -> ablation.nc (each task's
# risk increase when one head is off, the shares, winners and purity, and the OLS and ridge
# baselines on the same evaluation set); any model, any data.
FINAL_OUTPUTS["ablation"] = expand("results/runs/{run}/ablation.nc", run=ABLATION_RUNS)


rule ablation:
    input:
        train="results/runs/{run}/train.nc",
        eval_set=run_eval_set,
    output:
        ablation="results/runs/{run}/ablation.nc",
    log:
        "logs/ablation/{run}.log",
    benchmark:
        "benchmarks/ablation/{run}.tsv"
    wildcard_constraints:
        run="|".join(re.escape(r) for r in ABLATION_RUNS) or "(?!)",
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    message:
        "Head ablation of run {wildcards.run}"
    script:
        "../scripts/ablation.py"
