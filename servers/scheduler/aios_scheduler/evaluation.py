"""Six-dimension evaluation and EWMA reputation (spec/scheduler.md section 3.6); pure functions."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Final

from aios_scheduler.errors import bad_argument, reasoned
from aios_shared.errors import InvalidArgument

__all__ = [
    "ALPHA",
    "DEFAULT_WEIGHTS",
    "DIMENSIONS",
    "PRESETS",
    "composite",
    "distance",
    "ewma",
    "normalize",
    "validate_weights",
]

DIMENSIONS: Final = ("quality", "adherence", "speed", "cost", "error_rate", "revision_count")
ALPHA: Final = 0.3
WEIGHT_TOLERANCE: Final = 0.001


def _weights(*values: float) -> dict[str, float]:
    return dict(zip(DIMENSIONS, values, strict=True))


DEFAULT_WEIGHTS: Final = _weights(0.25, 0.20, 0.15, 0.15, 0.15, 0.10)
PRESETS: Final[dict[str, dict[str, float]]] = {
    "default": DEFAULT_WEIGHTS,
    "web_testing": DEFAULT_WEIGHTS,
    "legal_analysis": _weights(0.35, 0.25, 0.05, 0.10, 0.15, 0.10),
    "security_auditing": _weights(0.30, 0.20, 0.10, 0.10, 0.20, 0.10),
    "dashboard_generation": _weights(0.20, 0.15, 0.25, 0.20, 0.10, 0.10),
}
DEFAULT_INVERT: Final = ("error_rate", "revision_count")


def validate_weights(weights: Mapping[str, float]) -> dict[str, float]:
    """Exactly the six keys, each finite and >= 0, summing to 1 within 0.001.

    Raises:
        InvalidArgument: reason ``invalid_weights``.
    """
    keys = set(weights)
    if keys != set(DIMENSIONS):
        raise reasoned(
            InvalidArgument,
            "invalid_weights",
            f"Weights need exactly the keys {', '.join(DIMENSIONS)}.",
            missing=sorted(set(DIMENSIONS) - keys),
            extra=sorted(keys - set(DIMENSIONS)),
        )
    for name, value in weights.items():
        if not math.isfinite(value) or value < 0:
            raise reasoned(
                InvalidArgument, "invalid_weights", f"Weight {name}={value} must be >= 0."
            )
    total = math.fsum(weights.values())
    if abs(total - 1.0) >= WEIGHT_TOLERANCE:
        raise reasoned(
            InvalidArgument,
            "invalid_weights",
            f"Weights sum to {total:g}; they must sum to 1 (tolerance {WEIGHT_TOLERANCE}).",
            total=total,
        )
    return {name: float(weights[name]) for name in DIMENSIONS}


def normalize(
    raw: Mapping[str, float],
    invert: Sequence[str] = DEFAULT_INVERT,
    revisions: int | None = None,
    revisions_max: int | None = None,
) -> dict[str, float]:
    """Raw scores in [0, 1] to normalized values (inverted dimensions become 1 - raw).

    Raises:
        InvalidArgument: a missing, extra, non-finite or out-of-range score.
    """
    scores = dict(raw)
    if revisions is not None or revisions_max is not None:
        if revisions is None or revisions_max is None or revisions < 0 or revisions_max <= 0:
            raise bad_argument("revisions needs revisions_max > 0 and revisions >= 0.")
        scores["revision_count"] = min(revisions / revisions_max, 1.0)
    unknown = set(invert) - set(DIMENSIONS)
    if unknown:
        raise bad_argument(f"invert names unknown dimensions: {sorted(unknown)}.")
    if set(scores) != set(DIMENSIONS):
        raise bad_argument(
            f"Scores need exactly the dimensions {', '.join(DIMENSIONS)}.",
            missing=sorted(set(DIMENSIONS) - set(scores)),
            extra=sorted(set(scores) - set(DIMENSIONS)),
        )
    normalized: dict[str, float] = {}
    for name in DIMENSIONS:
        value = float(scores[name])
        if not math.isfinite(value) or not 0.0 <= value <= 1.0:
            raise bad_argument(f"Score {name}={value} must be a finite number in [0, 1].")
        normalized[name] = 1.0 - value if name in invert else value
    return normalized


def composite(normalized: Mapping[str, float], weights: Mapping[str, float]) -> float:
    value = math.fsum(weights[name] * normalized[name] for name in DIMENSIONS)
    assert -1e-9 <= value <= 1.0 + 1e-9, value
    return value


def ewma(previous: float | None, score: float) -> float:
    """R_1 = s_1; R_t = alpha * s_t + (1 - alpha) * R_{t-1}."""
    return score if previous is None else ALPHA * score + (1.0 - ALPHA) * previous


def distance(
    first: Mapping[str, float], second: Mapping[str, float], weights: Mapping[str, float]
) -> float:
    return math.sqrt(
        math.fsum(weights[name] * (first[name] - second[name]) ** 2 for name in DIMENSIONS)
    )
