"""The poster "Classification of Human Leukemias": its four binary tasks, models and numbers.

The poster's numbers load with the package; ``reproduce_poster`` (torch, Lightning, pandas)
loads on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amlcyto.poster.reference import POSTER_RESULTS, POSTER_TASKS

if TYPE_CHECKING:
    from amlcyto.poster.reproduce import reproduce_poster

__all__ = ["POSTER_RESULTS", "POSTER_TASKS", "reproduce_poster"]


def __getattr__(name: str):
    if name == "reproduce_poster":
        from amlcyto.poster.reproduce import reproduce_poster

        return reproduce_poster
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
