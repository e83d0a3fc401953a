FINAL_OUTPUTS["lengths"] = expand("results/runs/{run}/lengths.nc", run=list(SUITE.length_datasets))


rule lengths:
    input:
        train="results/runs/{run}/train.nc",
        eval_sets=run_length_eval_sets,
    output:
        lengths="results/runs/{run}/lengths.nc",
    log:
        "logs/lengths/{run}.log",
    benchmark:
        "benchmarks/lengths/{run}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        lengths=run_eval_lengths,
    message:
        "Evaluating run {wildcards.run} at other context lengths"
    script:
        "../scripts/evaluate_lengths.py"
