"""Option types shared by the commands, so that every command applies the same rules to the same option.

A value outside its range is a usage error (exit 2, one line) before any work starts.
"""

from __future__ import annotations

import re

import click

from vepcli.defaults import SCORE_NAMES

MAX_WINDOW = 131_072

THREADS = click.IntRange(min=1)
BATCH = click.IntRange(min=1)
WINDOW = click.IntRange(1, MAX_WINDOW)
POOL = click.IntRange(min=0)
MAX_INDEL = click.IntRange(min=1)
POSITIVE = click.IntRange(min=1)
COUNT = click.IntRange(min=0)
FRACTION = click.FloatRange(0.0, 1.0, min_open=True, max_open=True)
NONNEG_FLOAT = click.FloatRange(min=0.0)
SEED = click.IntRange(0, 2**32 - 1)  # what numpy and torch take as a seed
FOLDS = click.IntRange(min=2)  # cross-validation needs a fold to hold out and one to train on


class Device(click.ParamType):
    """auto, cpu, cuda or cuda:K."""

    name = "device"
    _PATTERN = re.compile(r"^(auto|cpu|cuda(:\d{1,3})?)$")

    def convert(self, value, param, ctx):
        if isinstance(value, str) and self._PATTERN.match(value):
            return value
        self.fail(f"{value!r} is not a device; use auto, cpu, cuda or cuda:K", param, ctx)


class ScoreList(click.ParamType):
    """A comma-separated list of distinct score names."""

    name = "scores"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        names = tuple(s.strip() for s in str(value).split(",") if s.strip())
        if not names:
            self.fail(f"no score named; choose from {', '.join(SCORE_NAMES)}", param, ctx)
        unknown = [s for s in names if s not in SCORE_NAMES]
        if unknown:
            self.fail(f"unknown score(s) {', '.join(unknown)}; choose from {', '.join(SCORE_NAMES)}", param, ctx)
        twice = sorted({s for s in names if names.count(s) > 1})
        if twice:
            self.fail(f"{', '.join(twice)} named twice; name each score once", param, ctx)
        return names


DEVICE = Device()
SCORES = ScoreList()
