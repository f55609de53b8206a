"""Tests of ``amlcyto.option_rules``: what an option takes, and how that reads."""

from __future__ import annotations

import math

import pytest

from amlcyto.option_rules import SHARE, SIZE, SIZES, Between, OptionRule


@pytest.mark.parametrize(
    ("rule", "takes", "refuses", "reads"),
    [
        (OptionRule(bool), [True, False], [0, 1, "true"], "true or false"),
        (OptionRule(int, SIZE), [1, 512], [0, 1.5, True, "2"], "a whole number of at least 1"),
        (
            OptionRule(float, SHARE),
            [0, 0.5, 0.999],
            [1, -0.1, math.nan, math.inf, False],
            "a number from 0 up to (not including) 1",
        ),
        (
            OptionRule(list, SIZES),
            [[1], (8, 16)],
            [[], [0], [1.5], 3],
            "a list of one or more whole numbers, each of at least 1",
        ),
        (OptionRule(str, choices=("a", "b")), ["a", "b"], ["c", 1], "one of a, b"),
    ],
)
def test_a_rule_takes_its_values_refuses_others_and_reads_as_it_takes(rule, takes, refuses, reads):
    assert all(rule.holds(value) for value in takes)
    assert not any(rule.holds(value) for value in refuses)
    assert str(rule) == reads


def test_an_included_upper_end_is_taken_and_reads_so():
    rule = OptionRule(float, Between(0, 1, below_included=True))
    assert rule.holds(1.0) and not rule.holds(1.0001) and str(rule) == "a number from 0 to 1"


def test_a_range_without_an_upper_end_reads_as_at_least():
    assert str(Between(0.001)) == "of at least 0.001"
    assert OptionRule(float, Between(0.001)).holds(1e9)
