# Figures (issue 6): one rule per figure kind, each drawn only for the runs or experiments the
# config's `figures` section names and the suite has (FIGURE_PLAN, common.smk). Every figure is
# flagged for the report under its claim's category, with a caption template in report/<kind>.rst
# that quotes the numbers of the figure's JSON summary (params.summary).

FINAL_OUTPUTS["figures"] = [
    *(spec.path for spec in FIGURE_PLAN),
    *(spec.summary for spec in FIGURE_PLAN),
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
            thresholds=LAYOUT.figure_thresholds(_kind),
            summary=caption_data,
        message:
            f"Figure {_kind} ({_figure.claim}) of "
            + (f"{_wildcard} {{wildcards.{_wildcard}}}" if _wildcard else "the suite")
        script:
            "../scripts/plot_figure.py"
