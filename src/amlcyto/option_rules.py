"""The rules options are checked by: what kind of value each takes and its range, read by
the model registry from a builder's annotations (``Annotated[float, SHARE]``) and declared
directly where settings are not a builder's (pretraining's ``--method-options``).

Pure Python, so that checking a setting loads no heavy library.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Between:
    """The range of a number option, or of each number of a list option: ``low <= value``,
    and ``value < below`` where given (``value <= below`` where ``below_included``); a list
    option holds at least ``min_items`` numbers."""

    low: float
    below: float | None = None
    min_items: int = 0
    below_included: bool = False

    def __str__(self) -> str:
        if self.below is None:
            return f"of at least {self.low:g}"
        if self.below_included:
            return f"from {self.low:g} to {self.below:g}"
        return f"from {self.low:g} up to (not including) {self.below:g}"

    def holds(self, value: float) -> bool:
        """Whether the number ``value`` is in the range."""
        if self.below is None:
            return self.low <= value
        return self.low <= value and (
            value <= self.below if self.below_included else value < self.below
        )


SIZE = Between(1)  # a count: units, channels, features
SIZES = Between(1, min_items=1)  # a list of counts, one or more
SHARE = Between(0, 1)  # a probability short of certain: dropout


@dataclass(frozen=True)
class OptionRule:
    """What one option takes: read from a builder parameter's annotation, or declared."""

    kind: type  # bool, int, float, str, or list (of whole numbers)
    between: Between = Between(-math.inf)  # a number's (or a list's numbers') range
    choices: tuple[str, ...] = ()  # a str option: its allowed values (a Literal)

    def __str__(self) -> str:
        if self.kind is bool:
            return "true or false"
        if self.kind is str:
            return f"one of {', '.join(self.choices)}" if self.choices else "a string"
        if self.kind is list:
            some = "one or more " if self.between.min_items else ""
            return f"a list of {some}whole numbers, each {self.between}"
        return f"{'a whole number' if self.kind is int else 'a number'} {self.between}"

    def holds(self, value: Any) -> bool:
        """Whether ``value`` (as JSON or Python gives it) is one this option takes."""
        if self.kind is bool:
            return isinstance(value, bool)
        if self.kind is str:
            return isinstance(value, str) and (not self.choices or value in self.choices)
        if self.kind is list:
            return (
                isinstance(value, list | tuple)
                and len(value) >= self.between.min_items
                and all(self._number(v, int) for v in value)
            )
        return self._number(value, self.kind)

    def _number(self, value: Any, kind: type) -> bool:
        wanted = numbers.Integral if kind is int else numbers.Real
        if isinstance(value, bool) or not isinstance(value, wanted) or not math.isfinite(value):
            return False
        return self.between.holds(value)
