"""Our compiled CPU selective scan (work in progress: not available yet)."""


def available() -> bool:
    return False


def selective_scan_cpu(*args, **kwargs):
    raise RuntimeError("the CPU scan kernel is not available")
