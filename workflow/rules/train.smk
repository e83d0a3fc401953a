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
    wildcard_constraints:
        run="|".join(re.escape(r) for r in TRAINED_RUNS),
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


# A shared run's train.nc (and spectral.nc) are copies of its owner's; a run read out by ablation
# shares only the training, so the two copies are separate rules.
rule share_train:
    input:
        train=lambda wildcards: f"results/runs/{SUITE.run_owner[wildcards.run]}/train.nc",
    output:
        train="results/runs/{run}/train.nc",
    log:
        "logs/share_run/{run}.train.log",
    wildcard_constraints:
        run="|".join(re.escape(r) for r in SHARED_RUNS) or "(?!)",
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    params:
        owner=lambda wildcards: SUITE.run_owner[wildcards.run],
    message:
        "Run {wildcards.run} trains like {params.owner}: copying its train.nc"
    shell:
        "cp {input.train} {output.train} 2> {log}"


rule share_spectral:
    input:
        spectral=lambda wildcards: f"results/runs/{SUITE.run_owner[wildcards.run]}/spectral.nc",
    output:
        spectral="results/runs/{run}/spectral.nc",
    log:
        "logs/share_run/{run}.spectral.log",
    wildcard_constraints:
        run="|".join(re.escape(r) for r in SPECTRAL_RUNS if r not in SPECTRAL_OWNERS) or "(?!)",
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    params:
        owner=lambda wildcards: SUITE.run_owner[wildcards.run],
    message:
        "Run {wildcards.run} trains like {params.owner}: copying its spectral.nc"
    shell:
        "cp {input.spectral} {output.spectral} 2> {log}"
