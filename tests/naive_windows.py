"""The window rule written out the slow, obvious way: the independent reference tests compare against."""


def naive(seq: str, start0: int, end0: int) -> str:
    """Upper-cased bases [start0, end0) of seq, N outside the contig."""
    return "".join(seq[i].upper() if 0 <= i < len(seq) else "N" for i in range(start0, end0))


def naive_ref(seq: str, pos: int, w: int) -> str:
    start = pos - 1 - w // 2
    return naive(seq, start, start + w)


def naive_alt(seq: str, pos: int, ref: str, alt: str, w: int) -> str:
    """The genome with REF replaced by ALT, read from the ref window's left end, w bases."""
    start = pos - 1 - w // 2
    return (naive(seq, start, pos - 1) + alt.upper() + naive(seq, pos - 1 + len(ref), start + w + len(ref)))[:w]


def ref_window(genome, contig: str, pos: int, width: int) -> str:
    """The W reference bases around pos through Genome.fetch (N-padded past the contig ends)."""
    start = pos - 1 - width // 2
    return genome.fetch(contig, start, start + width)


def alt_window(genome, contig: str, pos: int, ref: str, alt: str, width: int) -> str:
    """The ref window with REF replaced by ALT through Genome.fetch, kept to W bases on the right."""
    start, centre = pos - 1 - width // 2, width // 2
    after = pos - 1 + len(ref)
    need_right = max(0, width - centre - len(alt))
    seq = genome.fetch(contig, start, start + centre) + alt.upper() + genome.fetch(contig, after, after + need_right)
    return seq[:width]
