"""The config's ``spectral`` section resolved with its defaults (standard library only, so the
workflow can import it while it builds the DAG without loading torch).

The defaults here must equal those in workflow/schemas/config.schema.yaml (tests/test_spectral.py
checks it): the schema documents them, this module fills them into the rules' ``params`` so that a
changed setting re-runs exactly the analysis jobs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class SpectralSettings:
    """Settings of the per-run read-out (spectral.nc); see the schema for each key's meaning."""

    n_eff_prompts: int = 256
    clean_purity: float = 0.9
    warmup_fraction: float = 0.1
    emergence_fraction: float = 0.9
    min_change_snr: float = 5.0
    min_signal_rise: float = 0.25
    min_relative_loss_drop: float = 0.2
    ode_rtol: float = 1e-6

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None) -> SpectralSettings:
        """From the config's ``spectral`` mapping; other keys (``surrogate_check``) are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in dict(section or {}).items() if k in names})

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SurrogateCheckSettings:
    """The ``spectral.surrogate_check`` grid: two heads, two tasks of equal size d (the smallest
    setting with cross-head and cross-task terms). ``allocated`` has omega_hh = omega and
    omega_hi = omega/4 (i != h); ``shared`` has every omega_hi = omega; mu_hi = alpha_i omega_hi
    with
    alpha_i chosen so that p_i equals each of ``signal_targets``."""

    task_dims: tuple[int, ...] = (2, 4)
    context_lengths: tuple[int, ...] = (20, 80, 320)
    omegas: tuple[float, ...] = (0.15, 0.3, 0.45, 0.6)
    signal_targets: tuple[float, ...] = (0.5, 1.0)
    patterns: tuple[str, ...] = ("allocated", "shared")
    noise_std: float = 0.3
    prompts: int = 4096
    seed: int = 0
    tolerance: float = 0.1

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None) -> SurrogateCheckSettings:
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in dict(section or {}).items()}
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
