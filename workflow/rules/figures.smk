# Figures and the report (issue 6): one rule per figure kind, each drawn only for the runs or
# experiments the config's `figures` section names and the suite has (see common.smk, "figures").
# Every figure is flagged for the report under its claim's category, with a caption template in
# report/<kind>.rst that quotes the numbers of the figure's JSON summary (params.summary).
# The verdict table (HTML) is computed from every run's netCDF files and the optimality files.

FIGURE_PLAN = figure_plan()
FIGURE_SPECS = {(spec.kind, spec.target): spec for spec in FIGURE_PLAN}
FINAL_OUTPUTS["figures"] = [
    *(spec.path for spec in FIGURE_PLAN),
    *(spec.summary for spec in FIGURE_PLAN),
    "results/figures/verdicts.html",
    "results/figures/verdicts.json",
]


rule figure_convergence:
    input:
        unpack(figure_inputs("convergence")),
    output:
        figure=report(
            f"results/figures/convergence.{FIGURE_FORMAT}",
            caption="../../report/convergence.rst",
            category=figure_category("convergence"),
            subcategory=figure_subcategory("convergence"),
            labels=figure_labels("convergence"),
        ),
        summary="results/figures/convergence.json",
    log:
        "logs/figures/convergence.log",
    benchmark:
        "benchmarks/figures/convergence.tsv"
    localrule: True
    conda:
        "../../envs/plotting.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        kind="convergence",
        target="suite",
        runs=figure_runs("convergence"),
        length_runs=figure_length_runs("convergence"),
        thresholds=figure_thresholds("convergence"),
        summary=caption_data,
    message:
        "Figure convergence (C1) of all runs"
    script:
        "../scripts/plot_figure.py"


rule figure_risk:
    input:
        unpack(figure_inputs("risk")),
    output:
        figure=report(
            f"results/figures/{{run}}/risk.{FIGURE_FORMAT}",
            caption="../../report/risk.rst",
            category=figure_category("risk"),
            subcategory=figure_subcategory("risk"),
            labels=figure_labels("risk"),
        ),
        summary="results/figures/{run}/risk.json",
    log:
        "logs/figures/{run}/risk.log",
    benchmark:
        "benchmarks/figures/{run}/risk.tsv"
    wildcard_constraints:
        run=figure_pattern("risk"),
    localrule: True
    conda:
        "../../envs/plotting.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        kind="risk",
        target=lambda wildcards: wildcards.run,
        runs=figure_runs("risk"),
        length_runs=figure_length_runs("risk"),
        thresholds=figure_thresholds("risk"),
        summary=caption_data,
    message:
        "Figure risk (C2) of run {wildcards.run}"
    script:
        "../scripts/plot_figure.py"


rule figure_warmup:
    input:
        unpack(figure_inputs("warmup")),
    output:
        figure=report(
            f"results/figures/{{experiment}}/warmup.{FIGURE_FORMAT}",
            caption="../../report/warmup.rst",
            category=figure_category("warmup"),
            subcategory=figure_subcategory("warmup"),
            labels=figure_labels("warmup"),
        ),
        summary="results/figures/{experiment}/warmup.json",
    log:
        "logs/figures/{experiment}/warmup.log",
    benchmark:
        "benchmarks/figures/{experiment}/warmup.tsv"
    wildcard_constraints:
        experiment=figure_pattern("warmup"),
    localrule: True
    conda:
        "../../envs/plotting.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        kind="warmup",
        target=lambda wildcards: wildcards.experiment,
        runs=figure_runs("warmup"),
        length_runs=figure_length_runs("warmup"),
        thresholds=figure_thresholds("warmup"),
        summary=caption_data,
    message:
        "Figure warmup (C2) of experiment {wildcards.experiment}"
    script:
        "../scripts/plot_figure.py"


rule figure_allocation:
    input:
        unpack(figure_inputs("allocation")),
    output:
        figure=report(
            f"results/figures/{{run}}/allocation.{FIGURE_FORMAT}",
            caption="../../report/allocation.rst",
            category=figure_category("allocation"),
            subcategory=figure_subcategory("allocation"),
            labels=figure_labels("allocation"),
        ),
        summary="results/figures/{run}/allocation.json",
    log:
        "logs/figures/{run}/allocation.log",
    benchmark:
        "benchmarks/figures/{run}/allocation.tsv"
    wildcard_constraints:
        run=figure_pattern("allocation"),
    localrule: True
    conda:
        "../../envs/plotting.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        kind="allocation",
        target=lambda wildcards: wildcards.run,
        runs=figure_runs("allocation"),
        length_runs=figure_length_runs("allocation"),
        thresholds=figure_thresholds("allocation"),
        summary=caption_data,
    message:
        "Figure allocation (C3) of run {wildcards.run}"
    script:
        "../scripts/plot_figure.py"


rule figure_heatmaps:
    input:
        unpack(figure_inputs("heatmaps")),
    output:
        figure=report(
            f"results/figures/{{run}}/heatmaps.{FIGURE_FORMAT}",
            caption="../../report/heatmaps.rst",
            category=figure_category("heatmaps"),
            subcategory=figure_subcategory("heatmaps"),
            labels=figure_labels("heatmaps"),
        ),
        summary="results/figures/{run}/heatmaps.json",
    log:
        "logs/figures/{run}/heatmaps.log",
    benchmark:
        "benchmarks/figures/{run}/heatmaps.tsv"
    wildcard_constraints:
        run=figure_pattern("heatmaps"),
    localrule: True
    conda:
        "../../envs/plotting.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        kind="heatmaps",
        target=lambda wildcards: wildcards.run,
        runs=figure_runs("heatmaps"),
        length_runs=figure_length_runs("heatmaps"),
        thresholds=figure_thresholds("heatmaps"),
        summary=caption_data,
    message:
        "Figure heatmaps (C3) of run {wildcards.run}"
    script:
        "../scripts/plot_figure.py"


rule figure_purity:
    input:
        unpack(figure_inputs("purity")),
    output:
        figure=report(
            f"results/figures/{{experiment}}/purity.{FIGURE_FORMAT}",
            caption="../../report/purity.rst",
            category=figure_category("purity"),
            subcategory=figure_subcategory("purity"),
            labels=figure_labels("purity"),
        ),
        summary="results/figures/{experiment}/purity.json",
    log:
        "logs/figures/{experiment}/purity.log",
    benchmark:
        "benchmarks/figures/{experiment}/purity.tsv"
    wildcard_constraints:
        experiment=figure_pattern("purity"),
    localrule: True
    conda:
        "../../envs/plotting.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        kind="purity",
        target=lambda wildcards: wildcards.experiment,
        runs=figure_runs("purity"),
        length_runs=figure_length_runs("purity"),
        thresholds=figure_thresholds("purity"),
        summary=caption_data,
    message:
        "Figure purity (C3) of experiment {wildcards.experiment}"
    script:
        "../scripts/plot_figure.py"


rule figure_winner:
    input:
        unpack(figure_inputs("winner")),
    output:
        figure=report(
            f"results/figures/{{experiment}}/winner.{FIGURE_FORMAT}",
            caption="../../report/winner.rst",
            category=figure_category("winner"),
            subcategory=figure_subcategory("winner"),
            labels=figure_labels("winner"),
        ),
        summary="results/figures/{experiment}/winner.json",
    log:
        "logs/figures/{experiment}/winner.log",
    benchmark:
        "benchmarks/figures/{experiment}/winner.tsv"
    wildcard_constraints:
        experiment=figure_pattern("winner"),
    localrule: True
    conda:
        "../../envs/plotting.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        kind="winner",
        target=lambda wildcards: wildcards.experiment,
        runs=figure_runs("winner"),
        length_runs=figure_length_runs("winner"),
        thresholds=figure_thresholds("winner"),
        summary=caption_data,
    message:
        "Figure winner (C4) of experiment {wildcards.experiment}"
    script:
        "../scripts/plot_figure.py"


rule figure_optimality:
    input:
        unpack(figure_inputs("optimality")),
    output:
        figure=report(
            f"results/figures/{{experiment}}/optimality.{FIGURE_FORMAT}",
            caption="../../report/optimality.rst",
            category=figure_category("optimality"),
            subcategory=figure_subcategory("optimality"),
            labels=figure_labels("optimality"),
        ),
        summary="results/figures/{experiment}/optimality.json",
    log:
        "logs/figures/{experiment}/optimality.log",
    benchmark:
        "benchmarks/figures/{experiment}/optimality.tsv"
    wildcard_constraints:
        experiment=figure_pattern("optimality"),
    localrule: True
    conda:
        "../../envs/plotting.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        kind="optimality",
        target=lambda wildcards: wildcards.experiment,
        runs=figure_runs("optimality"),
        length_runs=figure_length_runs("optimality"),
        thresholds=figure_thresholds("optimality"),
        summary=caption_data,
    message:
        "Figure optimality (C5) of experiment {wildcards.experiment}"
    script:
        "../scripts/plot_figure.py"


rule figure_baselines:
    input:
        unpack(figure_inputs("baselines")),
    output:
        figure=report(
            f"results/figures/{{experiment}}/baselines.{FIGURE_FORMAT}",
            caption="../../report/baselines.rst",
            category=figure_category("baselines"),
            subcategory=figure_subcategory("baselines"),
            labels=figure_labels("baselines"),
        ),
        summary="results/figures/{experiment}/baselines.json",
    log:
        "logs/figures/{experiment}/baselines.log",
    benchmark:
        "benchmarks/figures/{experiment}/baselines.tsv"
    wildcard_constraints:
        experiment=figure_pattern("baselines"),
    localrule: True
    conda:
        "../../envs/plotting.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        kind="baselines",
        target=lambda wildcards: wildcards.experiment,
        runs=figure_runs("baselines"),
        length_runs=figure_length_runs("baselines"),
        thresholds=figure_thresholds("baselines"),
        summary=caption_data,
    message:
        "Figure baselines (C5) of experiment {wildcards.experiment}"
    script:
        "../scripts/plot_figure.py"


rule figure_separation:
    input:
        unpack(figure_inputs("separation")),
    output:
        figure=report(
            f"results/figures/{{experiment}}/separation.{FIGURE_FORMAT}",
            caption="../../report/separation.rst",
            category=figure_category("separation"),
            subcategory=figure_subcategory("separation"),
            labels=figure_labels("separation"),
        ),
        summary="results/figures/{experiment}/separation.json",
    log:
        "logs/figures/{experiment}/separation.log",
    benchmark:
        "benchmarks/figures/{experiment}/separation.tsv"
    wildcard_constraints:
        experiment=figure_pattern("separation"),
    localrule: True
    conda:
        "../../envs/plotting.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        kind="separation",
        target=lambda wildcards: wildcards.experiment,
        runs=figure_runs("separation"),
        length_runs=figure_length_runs("separation"),
        thresholds=figure_thresholds("separation"),
        summary=caption_data,
    message:
        "Figure separation (C6) of experiment {wildcards.experiment}"
    script:
        "../scripts/plot_figure.py"


rule figure_trajectories:
    input:
        unpack(figure_inputs("trajectories")),
    output:
        figure=report(
            f"results/figures/{{run}}/trajectories.{FIGURE_FORMAT}",
            caption="../../report/trajectories.rst",
            category=figure_category("trajectories"),
            subcategory=figure_subcategory("trajectories"),
            labels=figure_labels("trajectories"),
        ),
        summary="results/figures/{run}/trajectories.json",
    log:
        "logs/figures/{run}/trajectories.log",
    benchmark:
        "benchmarks/figures/{run}/trajectories.tsv"
    wildcard_constraints:
        run=figure_pattern("trajectories"),
    localrule: True
    conda:
        "../../envs/plotting.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        kind="trajectories",
        target=lambda wildcards: wildcards.run,
        runs=figure_runs("trajectories"),
        length_runs=figure_length_runs("trajectories"),
        thresholds=figure_thresholds("trajectories"),
        summary=caption_data,
    message:
        "Figure trajectories (C7) of run {wildcards.run}"
    script:
        "../scripts/plot_figure.py"


rule figure_surrogate:
    input:
        unpack(figure_inputs("surrogate")),
    output:
        figure=report(
            f"results/figures/surrogate.{FIGURE_FORMAT}",
            caption="../../report/surrogate.rst",
            category=figure_category("surrogate"),
            subcategory=figure_subcategory("surrogate"),
            labels=figure_labels("surrogate"),
        ),
        summary="results/figures/surrogate.json",
    log:
        "logs/figures/surrogate.log",
    benchmark:
        "benchmarks/figures/surrogate.tsv"
    localrule: True
    conda:
        "../../envs/plotting.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        kind="surrogate",
        target="suite",
        runs=figure_runs("surrogate"),
        length_runs=figure_length_runs("surrogate"),
        thresholds=figure_thresholds("surrogate"),
        summary=caption_data,
    message:
        "Figure surrogate (C7): the finite-L surrogate against Monte Carlo"
    script:
        "../scripts/plot_figure.py"


rule figure_regimes:
    input:
        unpack(figure_inputs("regimes")),
    output:
        figure=report(
            f"results/figures/{{experiment}}/regimes.{FIGURE_FORMAT}",
            caption="../../report/regimes.rst",
            category=figure_category("regimes"),
            subcategory=figure_subcategory("regimes"),
            labels=figure_labels("regimes"),
        ),
        summary="results/figures/{experiment}/regimes.json",
    log:
        "logs/figures/{experiment}/regimes.log",
    benchmark:
        "benchmarks/figures/{experiment}/regimes.tsv"
    wildcard_constraints:
        experiment=figure_pattern("regimes"),
    localrule: True
    conda:
        "../../envs/plotting.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        kind="regimes",
        target=lambda wildcards: wildcards.experiment,
        runs=figure_runs("regimes"),
        length_runs=figure_length_runs("regimes"),
        thresholds=figure_thresholds("regimes"),
        summary=caption_data,
    message:
        "Figure regimes (C8) of experiment {wildcards.experiment}"
    script:
        "../scripts/plot_figure.py"


rule figure_length:
    input:
        unpack(figure_inputs("length")),
    output:
        figure=report(
            f"results/figures/{{experiment}}/length.{FIGURE_FORMAT}",
            caption="../../report/length.rst",
            category=figure_category("length"),
            subcategory=figure_subcategory("length"),
            labels=figure_labels("length"),
        ),
        summary="results/figures/{experiment}/length.json",
    log:
        "logs/figures/{experiment}/length.log",
    benchmark:
        "benchmarks/figures/{experiment}/length.tsv"
    wildcard_constraints:
        experiment=figure_pattern("length"),
    localrule: True
    conda:
        "../../envs/plotting.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        kind="length",
        target=lambda wildcards: wildcards.experiment,
        runs=figure_runs("length"),
        length_runs=figure_length_runs("length"),
        thresholds=figure_thresholds("length"),
        summary=caption_data,
    message:
        "Figure length (C9) of experiment {wildcards.experiment}"
    script:
        "../scripts/plot_figure.py"


rule figure_linear:
    input:
        unpack(figure_inputs("linear")),
    output:
        figure=report(
            f"results/figures/{{experiment}}/linear.{FIGURE_FORMAT}",
            caption="../../report/linear.rst",
            category=figure_category("linear"),
            subcategory=figure_subcategory("linear"),
            labels=figure_labels("linear"),
        ),
        summary="results/figures/{experiment}/linear.json",
    log:
        "logs/figures/{experiment}/linear.log",
    benchmark:
        "benchmarks/figures/{experiment}/linear.tsv"
    wildcard_constraints:
        experiment=figure_pattern("linear"),
    localrule: True
    conda:
        "../../envs/plotting.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        kind="linear",
        target=lambda wildcards: wildcards.experiment,
        runs=figure_runs("linear"),
        length_runs=figure_length_runs("linear"),
        thresholds=figure_thresholds("linear"),
        summary=caption_data,
    message:
        "Figure linear (C9) of experiment {wildcards.experiment}"
    script:
        "../scripts/plot_figure.py"


rule figure_nonlinear:
    input:
        unpack(figure_inputs("nonlinear")),
    output:
        figure=report(
            f"results/figures/{{experiment}}/nonlinear.{FIGURE_FORMAT}",
            caption="../../report/nonlinear.rst",
            category=figure_category("nonlinear"),
            subcategory=figure_subcategory("nonlinear"),
            labels=figure_labels("nonlinear"),
        ),
        summary="results/figures/{experiment}/nonlinear.json",
    log:
        "logs/figures/{experiment}/nonlinear.log",
    benchmark:
        "benchmarks/figures/{experiment}/nonlinear.tsv"
    wildcard_constraints:
        experiment=figure_pattern("nonlinear"),
    localrule: True
    conda:
        "../../envs/plotting.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        kind="nonlinear",
        target=lambda wildcards: wildcards.experiment,
        runs=figure_runs("nonlinear"),
        length_runs=figure_length_runs("nonlinear"),
        thresholds=figure_thresholds("nonlinear"),
        summary=caption_data,
    message:
        "Figure nonlinear (C9) of experiment {wildcards.experiment}"
    script:
        "../scripts/plot_figure.py"


rule verdicts:
    input:
        unpack(verdict_inputs),
    output:
        table=report(
            "results/figures/verdicts.html",
            caption="../../report/verdicts.rst",
            category=VERDICT_CATEGORY,
            labels={"figure": "verdict table, claims C1-C9", "data": "every run"},
        ),
        summary="results/figures/verdicts.json",
    log:
        "logs/figures/verdicts.log",
    benchmark:
        "benchmarks/figures/verdicts.tsv"
    localrule: True
    conda:
        "../../envs/plotting.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        runs=RUNS,
        length_runs=length_runs(RUNS),
        optimality=verdict_optimality_experiments(),
        settings=REPORT_SETTINGS,
        thresholds=VERDICT_THRESHOLDS,
        plan=figure_plan_params(),
        summary=caption_data,
    message:
        "Verdict table of claims C1-C9"
    script:
        "../scripts/write_verdicts.py"
