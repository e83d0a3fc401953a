# The verdicts of claims C1-C9 (HTML table and JSON), computed from every run's netCDF files and
# the optimality files, and the tables to take away (CSV, LaTeX) of the verdicts and optimality.

FINAL_OUTPUTS["verdicts"] = ["results/figures/verdicts.html", "results/figures/verdicts.json"]


rule verdicts:
    input:
        **LAYOUT.verdict_inputs(),
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
        **LAYOUT.verdict_params(FIGURE_PLAN),
        summary=caption_data,
    message:
        "Verdict table of claims C1-C9"
    script:
        "../scripts/write_verdicts.py"


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
