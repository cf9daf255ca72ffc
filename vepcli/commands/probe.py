"""`vepcli probe train|eval` (not implemented yet)."""

import click


@click.group()
def probe() -> None:
    """(coming) SVM or logistic probes on variant embeddings."""
