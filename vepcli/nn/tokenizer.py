"""The Caduceus character tokenizer: published ids, complement map, reverse complement.

Ids: [CLS]0 [SEP]1 [BOS]2 [MASK]3 [PAD]4 [RESERVED]5 [UNK]6 A7 C8 G9 T10 N11; the model pads the
vocabulary to 16 and ids 12..15 are their own complements. No special tokens are added for
inference or pretraining; batches are padded on the left, as the published tokenizer does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

CLS, SEP, BOS, MASK, PAD, RESERVED, UNK = range(7)
A, C, G, T, N = 7, 8, 9, 10, 11
VOCAB = ("[CLS]", "[SEP]", "[BOS]", "[MASK]", "[PAD]", "[RESERVED]", "[UNK]", "A", "C", "G", "T", "N")
NUCLEOTIDES = (A, C, G, T)
VOCAB_SIZE = 16  # 12 real ids padded to a multiple of 8

COMPLEMENT = torch.arange(VOCAB_SIZE)
COMPLEMENT[[A, C, G, T]] = torch.tensor([T, G, C, A])

# byte -> id lookup: upper and lower case map to the same id, anything else is [UNK]
_BYTE_TO_ID = np.full(256, UNK, dtype=np.int64)
for _ch, _id in zip("ACGTN", (A, C, G, T, N), strict=True):
    _BYTE_TO_ID[ord(_ch)] = _id
    _BYTE_TO_ID[ord(_ch.lower())] = _id
_ID_TO_CHAR = np.array(list("??????" + "?ACGTN????"), dtype="U1")
_ID_TO_CHAR[PAD], _ID_TO_CHAR[MASK], _ID_TO_CHAR[UNK] = "-", "*", "?"
_DNA_COMPLEMENT = str.maketrans("ACGTNacgtn", "TGCANtgcan")


def encode(seq: str) -> np.ndarray:
    """DNA string -> int64 ids (case-insensitive; other characters become [UNK])."""
    return _BYTE_TO_ID[np.frombuffer(seq.encode("ascii", "replace"), dtype=np.uint8)]


def decode(ids: Sequence[int] | np.ndarray | torch.Tensor) -> str:
    """Ids -> string; [PAD] shows as '-', [MASK] as '*', other specials as '?'."""
    arr = np.asarray(ids.cpu() if isinstance(ids, torch.Tensor) else ids, dtype=np.int64)
    return "".join(_ID_TO_CHAR[np.clip(arr, 0, VOCAB_SIZE - 1)])


def batch_encode(seqs: Sequence[str], length: int | None = None) -> torch.Tensor:
    """Encode strings into one (B, L) int64 tensor, left-padded with [PAD] like the published tokenizer."""
    length = length or max(len(s) for s in seqs)
    out = torch.full((len(seqs), length), PAD, dtype=torch.long)
    for i, s in enumerate(seqs):
        if len(s) > length:
            raise ValueError(f"sequence {i} has {len(s)} bases, more than the length {length}")
        if s:
            out[i, length - len(s) :] = torch.from_numpy(encode(s))
    return out


def reverse_complement_ids(ids: torch.Tensor) -> torch.Tensor:
    """Reverse-complement token ids along the last dimension."""
    return COMPLEMENT.to(ids.device)[ids.flip(-1)]


def reverse_complement(seq: str) -> str:
    """Reverse-complement a DNA string (case kept, other characters unchanged)."""
    return seq.translate(_DNA_COMPLEMENT)[::-1]
