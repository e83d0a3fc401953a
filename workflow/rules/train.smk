FINAL_OUTPUTS["train"] = expand("results/runs/{run}/train.nc", run=RUNS)


rule train:
    message:
        "Training run {wildcards.run}"
    input:
        eval_set=run_eval_set,
    params:
        run=run_train_params,
        checkpoint=lambda wildcards: f"results/runs/{wildcards.run}/train.ckpt",
    output:
        train="results/runs/{run}/train.nc",
    log:
        "logs/train/{run}.log",
    benchmark:
        "benchmarks/train/{run}.tsv"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=120,
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/train.py"
