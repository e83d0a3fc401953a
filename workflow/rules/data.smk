rule eval_set:
    output:
        dataset="results/data/{dataset}.nc",
    log:
        "logs/data/{dataset}.log",
    benchmark:
        "benchmarks/data/{dataset}.tsv"
    localrule: True
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        data=dataset_params,
    message:
        "Drawing the fixed evaluation set {wildcards.dataset}"
    script:
        "../scripts/make_eval_set.py"
