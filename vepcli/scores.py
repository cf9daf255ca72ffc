"""The pooling span of a window: which positions the pooled ref and alt embeddings average.

The scores themselves are plug-ins in `vepcli/scoring/` (docs/scores.md).
"""

from __future__ import annotations

from vepcli.defaults import POOL_DEFAULT

__all__ = ["POOL_DEFAULT", "pool_span"]


def pool_span(window: int, centre: int, pool: int = POOL_DEFAULT) -> tuple[int, int]:
    """[start, end) of `pool` + 1 positions centred on `centre`, clamped to the window."""
    half = pool // 2
    return max(0, centre - half), min(window, centre + half + 1)
