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


# One rule per figure kind of report.FIGURE_KINDS (its scope sets the wildcard: a run, an
# experiment, or none for the whole suite); a new figure is a registry row, a caption in
# report/<kind>.rst and a draw function in plots.py.
for _kind, _figure in FIGURE_KINDS.items():
    _wildcard = {"run": "run", "experiment": "experiment", "suite": None}[_figure.scope]
    _folder = f"{{{_wildcard}}}/" if _wildcard else ""

    rule:
        name:
            f"figure_{_kind}"
        input:
            unpack(figure_inputs(_kind)),
        output:
            figure=report(
                f"results/figures/{_folder}{_kind}.{FIGURE_FORMAT}",
                caption=f"../../report/{_kind}.rst",
                category=figure_category(_kind),
                subcategory=figure_subcategory(_kind),
                labels=figure_labels(_kind),
            ),
            summary=f"results/figures/{_folder}{_kind}.json",
        log:
            f"logs/figures/{_folder}{_kind}.log",
        benchmark:
            f"benchmarks/figures/{_folder}{_kind}.tsv"
        wildcard_constraints:
            **({_wildcard: figure_pattern(_kind)} if _wildcard else {}),
        localrule: True
        conda:
            "../../envs/plotting.yaml"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        params:
            kind=_kind,
            target=figure_target(_wildcard),
            runs=figure_runs(_kind),
            length_runs=figure_length_runs(_kind),
            flow_runs=figure_flow_runs(_kind),
            thresholds=figure_thresholds(_kind),
            summary=caption_data,
        message:
            f"Figure {_kind} ({_figure.claim}) of "
            + (f"{_wildcard} {{wildcards.{_wildcard}}}" if _wildcard else "the suite")
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
        flow_runs=FLOW_RUNS,
        optimality=verdict_optimality_experiments(),
        settings=REPORT_SETTINGS,
        comparisons=COMPARISONS,
        thresholds=VERDICT_THRESHOLDS,
        plan=figure_plan_params(),
        summary=caption_data,
    message:
        "Verdict table of claims C1-C9"
    script:
        "../scripts/write_verdicts.py"


# The setting of the suite as a report item of its own (issue 16): its caption holds the question,
# the definitions and how to read the report; its file lists every run's resolved parameters.
FINAL_OUTPUTS["setting"] = ["results/figures/setting.yaml"]


rule setting:
    output:
        report(
            "results/figures/setting.yaml",
            caption="../../report/setting.rst",
            category=SETTING_CATEGORY,
            labels={"figure": "the setting and every run's parameters", "data": "every run"},
        ),
    log:
        "logs/figures/setting.log",
    localrule: True
    conda:
        "../../envs/plotting.yaml"
    params:
        runs={run: SUITE.runs[run] for run in RUNS},
    message:
        "The setting: every run's resolved parameters"
    script:
        "../scripts/write_setting.py"


# Tables to take away (issue 16): the verdicts and the optimality files as CSV and LaTeX.
FINAL_OUTPUTS["tables"] = expand(
    "results/tables/{name}.{ext}", name=["verdicts", "optimality"], ext=["csv", "tex"]
)


rule tables:
    input:
        summary="results/figures/verdicts.json",
        optimality=expand("results/optimality/{name}.nc", name=OPTIMALITY_EXPERIMENTS),
    output:
        verdicts_csv=report(
            "results/tables/verdicts.csv",
            caption="../../report/tables.rst",
            category=VERDICT_CATEGORY,
            labels={"figure": "verdict table as CSV", "data": "every run"},
        ),
        verdicts_tex="results/tables/verdicts.tex",
        optimality_csv=report(
            "results/tables/optimality.csv",
            caption="../../report/tables.rst",
            category=VERDICT_CATEGORY,
            labels={"figure": "optimality table as CSV", "data": "optimality files"},
        ),
        optimality_tex="results/tables/optimality.tex",
    log:
        "logs/figures/tables.log",
    localrule: True
    conda:
        "../../envs/plotting.yaml"
    params:
        optimality=OPTIMALITY_EXPERIMENTS,
    message:
        "Tables of the verdicts and the optimality files (CSV, LaTeX)"
    script:
        "../scripts/write_tables.py"
