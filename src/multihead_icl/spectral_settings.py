"""The config's ``spectral`` section as typed settings (standard library and the config module only,
so the workflow can import it while it builds the DAG without loading torch).

Every field is required: the values, defaults included, come from the config section filled by
``config.with_defaults`` from the package's schema, which documents each key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from .config import with_defaults


@dataclass(frozen=True)
class SpectralSettings:
    """Settings of the per-run read-out (spectral.nc); see the schema for each key's meaning."""

    n_eff_prompts: int
    clean_purity: float
    warmup_fraction: float
    emergence_fraction: float
    min_change_snr: float
    min_signal_rise: float
    min_relative_loss_drop: float
    ode_rtol: float

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None = None) -> SpectralSettings:
        """From the config's ``spectral`` mapping (schema defaults under it); the
        ``surrogate_check`` subsection is SurrogateCheckSettings'."""
        values = with_defaults("spectral", section)
        return cls(**{f.name: values[f.name] for f in fields(cls)})

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SurrogateCheckSettings:
    """The ``spectral.surrogate_check`` grid: two heads, two tasks of equal size d (the smallest
    setting with cross-head and cross-task terms). ``allocated`` has omega_hh = omega and
    omega_hi = omega/4 (i != h); ``shared`` has every omega_hi = omega; mu_hi = alpha_i omega_hi
    with alpha_i chosen so that p_i equals each of ``signal_targets``."""

    task_dims: tuple[int, ...]
    context_lengths: tuple[int, ...]
    omegas: tuple[float, ...]
    signal_targets: tuple[float, ...]
    patterns: tuple[str, ...]
    noise_std: float
    prompts: int
    seed: int
    tolerance: float

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None = None) -> SurrogateCheckSettings:
        """From the ``spectral.surrogate_check`` mapping (schema defaults under it)."""
        values = with_defaults("spectral", {"surrogate_check": dict(section or {})})[
            "surrogate_check"
        ]
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    def as_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
