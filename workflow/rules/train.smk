FINAL_OUTPUTS["train"] = expand("results/runs/{run}/train.nc", run=RUNS)


rule train:
    input:
        eval_set=run_eval_set,
    output:
        train="results/runs/{run}/train.nc",
    log:
        "logs/train/{run}.log",
    benchmark:
        "benchmarks/train/{run}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        run=run_train_params,
        checkpoint=lambda wildcards: f"results/runs/{wildcards.run}/train.ckpt",
    message:
        "Training run {wildcards.run}"
    script:
        "../scripts/train.py"
