"""Schedules: a hyperparameter as a function of training progress p in [0, 1] (stable-baselines3 style).

p = 0 at the first update and p = 1 at the last, so a schedule does not depend on the run length. Used for the
learning rate, the objective's α, the target network's τ, the sampler's p and the like.
"""

from __future__ import annotations

import dataclasses
import math

SCHEDULE_KINDS: tuple[str, ...] = ("constant", "linear", "cosine", "step", "exponential")
"""The valid ``kind`` values of :func:`schedule_value` and :class:`Schedule`."""


def schedule_value(
    kind: str,
    start: float,
    end: float,
    progress: float,
    *,
    step_milestones: tuple[float, ...] = (0.5,),
) -> float:
    """The value of a schedule going from ``start`` (p = 0) to ``end`` (p = 1) at progress p, clamped into [0, 1].

    - ``constant``:    v(p) = start
    - ``linear``:      v(p) = start + (end - start) p
    - ``cosine``:      v(p) = end + (start - end) (1 + cos(π p)) / 2
    - ``step``:        v(p) = start + (end - start) |{i : m_i <= p}| / n, for milestones m_1 < ... < m_n in [0, 1]
    - ``exponential``: v(p) = start (end / start)^p, for start, end > 0 (a geometric interpolation)

    Raises ValueError for an unknown kind, a NaN progress, bad milestones, or a non-positive exponential endpoint.
    """
    if math.isnan(progress):
        raise ValueError("schedule progress is NaN; pass the fraction of training done, in [0, 1]")
    # Clamped rather than rejected: progress computed as update / updates can overshoot by rounding, and a schedule
    # held at its endpoint past the end is what a caller means.
    p = min(max(progress, 0.0), 1.0)
    if kind == "constant":
        return start
    if kind == "linear":
        return start + (end - start) * p
    if kind == "cosine":
        return end + (start - end) * (1.0 + math.cos(math.pi * p)) / 2.0
    if kind == "step":
        _check_milestones(step_milestones)
        passed = sum(1 for m in step_milestones if m <= p)
        return start + (end - start) * passed / len(step_milestones)
    if kind == "exponential":
        if not (start > 0.0 and end > 0.0):
            raise ValueError(
                f"an exponential schedule needs start > 0 and end > 0 (got start={start}, end={end}); "
                "use a small positive value such as 1e-6 instead of 0, or the 'linear' or 'cosine' kind to reach 0"
            )
        return start * (end / start) ** p
    raise ValueError(f"unknown schedule kind {kind!r}; valid kinds: {', '.join(SCHEDULE_KINDS)}")


def _check_milestones(milestones: tuple[float, ...]) -> None:
    if not milestones:
        raise ValueError("a step schedule needs at least one milestone in step_milestones, e.g. (0.5,)")
    if any(not 0.0 <= m <= 1.0 for m in milestones):
        raise ValueError(f"step milestones are progress values and must lie in [0, 1]; got {milestones}")
    if any(b <= a for a, b in zip(milestones, milestones[1:], strict=False)):
        raise ValueError(f"step milestones must be strictly increasing; got {milestones}")


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A schedule bound to its parameters: ``Schedule("cosine", 1e-4, 1e-5)(p)`` is :func:`schedule_value` at p.

    The parameters are checked on construction (by evaluating at p = 0), so a bad schedule fails before training.
    """

    kind: str
    start: float
    end: float
    step_milestones: tuple[float, ...] = (0.5,)

    def __post_init__(self) -> None:
        # A list from YAML would make the frozen instance unhashable; store it as the tuple the type promises.
        object.__setattr__(self, "step_milestones", tuple(self.step_milestones))
        self(0.0)

    def __call__(self, progress: float) -> float:
        """v(p); see :func:`schedule_value`."""
        return schedule_value(self.kind, self.start, self.end, progress, step_milestones=self.step_milestones)
