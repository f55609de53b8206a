"""The poster "Classification of Human Leukemias": its four binary tasks, models and numbers."""

from amlcyto.poster.reference import POSTER_RESULTS, POSTER_TASKS
from amlcyto.poster.reproduce import reproduce_poster

__all__ = ["POSTER_RESULTS", "POSTER_TASKS", "reproduce_poster"]
