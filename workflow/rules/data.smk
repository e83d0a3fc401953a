rule eval_set:
    message:
        "Drawing the fixed evaluation set {wildcards.dataset}"
    params:
        data=dataset_params,
    output:
        dataset="results/data/{dataset}.nc",
    log:
        "logs/data/{dataset}.log",
    benchmark:
        "benchmarks/data/{dataset}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/make_eval_set.py"
