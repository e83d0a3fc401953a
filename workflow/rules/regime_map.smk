# Regime maps (issue 14): experiments of `kind: regime_map`, one exact flow per grid point from its
# init alone (no training; the `flow` section's sample, horizon and tolerances), gathered with the
# best in class of each setting into results/maps/<experiment>.nc.
MAPS = SUITE.maps
FINAL_OUTPUTS["maps"] = expand("results/maps/{experiment}.nc", experiment=list(MAPS))


rule map_point:
    output:
        point="results/maps/{experiment}/{point}.nc",
    log:
        "logs/maps/{experiment}/{point}.log",
    benchmark:
        "benchmarks/maps/{experiment}/{point}.tsv"
    wildcard_constraints:
        experiment="|".join(re.escape(m) for m in MAPS) or "(?!)",
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        point=lambda wildcards: MAPS[wildcards.experiment][wildcards.point],
        flow={k: v for k, v in SUITE.config["flow"].items() if k != "experiments"},
        spectral=SPECTRAL_SETTINGS,
    message:
        "Regime map {wildcards.experiment}: the exact flow of point {wildcards.point}"
    script:
        "../scripts/map_point.py"


rule regime_map:
    input:
        points=lambda wildcards: expand(
            "results/maps/{experiment}/{point}.nc",
            experiment=wildcards.experiment,
            point=list(MAPS[wildcards.experiment]),
        ),
    output:
        map="results/maps/{experiment}.nc",
    log:
        "logs/maps/{experiment}.log",
    benchmark:
        "benchmarks/maps/{experiment}.tsv"
    wildcard_constraints:
        experiment="|".join(re.escape(m) for m in MAPS) or "(?!)",
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=240,  # minutes: one best-in-class search per distinct setting of the map
    params:
        points=lambda wildcards: list(MAPS[wildcards.experiment]),
        grid_keys=lambda wildcards: list(
            SUITE.config["experiments"][wildcards.experiment].get("grid", {})
        ),
        search=SUITE.config["optimality"],
    message:
        "Regime map {wildcards.experiment}: end states against the best in class"
    script:
        "../scripts/gather_map.py"
