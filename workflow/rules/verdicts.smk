# The report items that are not figures: the verdicts of claims C1-C9 and question Q1 (HTML table and JSON, from
# every run's netCDF files and the optimality files), the setting (every run's parameters), and the
# tables to take away (CSV, LaTeX) of the verdicts and optimality.

FINAL_OUTPUTS["verdicts"] = ["results/figures/verdicts.html", "results/figures/verdicts.json"]


rule verdicts:
    input:
        **LAYOUT.verdict_inputs(),
    output:
        table=report(
            "results/figures/verdicts.html",
            caption="../../report/verdicts.rst",
            category=VERDICT_CATEGORY,
            labels={"figure": "verdict table, claims C1-C9 and question Q1", "data": "every run"},
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
        **LAYOUT.verdict_params(FIGURE_PLAN),
        summary=caption_data,
    message:
        "Verdict table of claims C1-C9 and question Q1"
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
