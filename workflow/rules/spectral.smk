# Spectral analysis (issue 4): each run's train.nc -> spectral.nc (omega, mu, allocation, phases,
# n_eff / L, the spectral ODE overlay), and one Monte-Carlo check of the finite-L risk surrogate.
from multihead_icl.spectral_settings import SpectralSettings, SurrogateCheckSettings

SPECTRAL_SETTINGS = SpectralSettings.from_config(SUITE.config["spectral"]).as_dict()
SURROGATE_CHECK_SETTINGS = SurrogateCheckSettings.from_config(
    SUITE.config["spectral"]["surrogate_check"]
).as_dict()

FINAL_OUTPUTS["spectral"] = expand("results/runs/{run}/spectral.nc", run=SPECTRAL_RUNS)
FINAL_OUTPUTS["surrogate_check"] = ["results/theory/surrogate_check.nc"]


rule spectral:
    input:
        train="results/runs/{run}/train.nc",
        eval_set=run_eval_set,
    output:
        spectral="results/runs/{run}/spectral.nc",
    log:
        "logs/spectral/{run}.log",
    benchmark:
        "benchmarks/spectral/{run}.tsv"
    wildcard_constraints:
        run="|".join(re.escape(r) for r in SPECTRAL_OWNERS) or "(?!)",
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    params:
        settings=SPECTRAL_SETTINGS,
    message:
        "Spectral read-out of run {wildcards.run}"
    script:
        "../scripts/spectral.py"


rule surrogate_check:
    output:
        check="results/theory/surrogate_check.nc",
    log:
        "logs/theory/surrogate_check.log",
    benchmark:
        "benchmarks/theory/surrogate_check.tsv"
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    params:
        settings=SURROGATE_CHECK_SETTINGS,
    message:
        "Checking the finite-L risk surrogate against Monte Carlo"
    script:
        "../scripts/surrogate_check.py"
