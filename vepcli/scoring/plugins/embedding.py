"""`emb_l2` and `emb_cos`: distances between the pooled ref and alt embeddings of an allele.

Both are >= 0, and larger means a bigger change of the model's representation (emb_cos is at most 2).
They are defined for every kind of allele, indels included.
"""

from __future__ import annotations

from typing import Any

from vepcli.scoring.registry import POOLED, Score, register


def emb_l2(ref: Any, alt: Any) -> float:
    """Euclidean distance, in float64."""
    import torch

    return float(torch.linalg.vector_norm(alt.double() - ref.double()))


def emb_cos(ref: Any, alt: Any) -> float:
    """Cosine distance 1 - cos(ref, alt), in float64."""
    import torch

    return float(1.0 - torch.nn.functional.cosine_similarity(ref.double(), alt.double(), dim=0))


EMB_L2 = register(
    Score(
        "emb_l2",
        "Euclidean distance between pooled ref and alt embeddings (>= 0; larger = bigger effect)",
        frozenset({POOLED}),
        lambda x: emb_l2(x.ref_pooled, x.alt_pooled),
        order=20,
    )
)
EMB_COS = register(
    Score(
        "emb_cos",
        "Cosine distance 1 - cos(ref, alt) between pooled embeddings (larger = bigger effect)",
        frozenset({POOLED}),
        lambda x: emb_cos(x.ref_pooled, x.alt_pooled),
        order=30,
    )
)
