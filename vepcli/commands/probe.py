"""`vepcli probe train|eval|info`: scikit-learn probes on `vepcli embed` output (see docs/probes.md)."""

from __future__ import annotations

import json

import click

from vepcli.commands import options as opt
from vepcli.defaults import PROBE_FOLDS, PROBE_KINDS, PROBE_LAYOUTS
from vepcli.errors import UserError

# vepcli.probe (pandas, scikit-learn) is imported inside the commands: `vepcli --help` stays quick


def _limit_threads(threads: int | None):
    """BLAS/OpenMP threads for numpy and scikit-learn (libsvm itself is single-threaded)."""
    from contextlib import nullcontext

    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads) if threads else nullcontext()


def _numbers(text: str | None, option: str) -> tuple[float, ...] | None:
    if not text:
        return None
    try:
        values = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise UserError(f"{option} {text!r} must be comma-separated numbers, e.g. 1,5,10") from None
    if not values or min(values) <= 0:
        raise UserError(f"{option} {text!r} must be positive numbers, e.g. 1,5,10")
    return values


def _class_weights(text: str) -> tuple[str | None, ...]:
    values = tuple(x.strip() for x in text.split(",") if x.strip())
    bad = [v for v in values if v not in ("none", "balanced")]
    if bad or not values:
        raise UserError(f"--class-weights {text!r}: use none, balanced or none,balanced")
    return tuple(None if v == "none" else v for v in values)


@click.group()
def probe() -> None:
    """SVM or logistic probes on pooled ref/alt embeddings from `vepcli embed`."""


@probe.command()
@click.argument("embeddings", type=click.Path(exists=True, dir_okay=False))
@click.option("--label", required=True, help="Binary label column.")
@click.option("-o", "--output", required=True, help="Probe file to write (.skops).")
@click.option(
    "--kind",
    type=click.Choice(PROBE_KINDS),
    default="svm",
    show_default=True,
    help="StandardScaler + RBF SVC, or + logistic regression.",
)
@click.option(
    "--features",
    "layout",
    type=click.Choice(PROBE_LAYOUTS),
    default="ref-alt",
    show_default=True,
    help="[ref | alt] or [ref | alt | alt-ref].",
)
@click.option("--covariate", "covariates", multiple=True, help="Categorical column added one-hot (repeatable).")
@click.option(
    "--groups",
    default=None,
    help="Column whose values are held out together in CV "
    "[default: chromosome if >= 3, else contiguous genomic blocks].",
)
@click.option("--folds", type=opt.FOLDS, default=PROBE_FOLDS, show_default=True)
@click.option("--C", "c_values", default=None, help="C values to try [default: svm 1,5,10; logistic 0.01,0.1,1,10].")
@click.option("--class-weights", default="none,balanced", show_default=True, help="Class weights to try.")
@click.option("--positive", default=None, help="The positive label value [default: 1/true/yes, else the larger].")
@opt.seed_option()
@opt.threads_option(None, "CPU threads for numpy/scikit-learn.")
@click.option("-q", "--quiet", is_flag=True)
def train(
    embeddings,
    label,
    output,
    kind,
    layout,
    covariates,
    groups,
    folds,
    c_values,
    class_weights,
    positive,
    seed,
    threads,
    quiet,
) -> None:
    """Train a probe on EMBEDDINGS (`vepcli embed` output); C and class weights by held-out-group CV."""
    from vepcli import probe as lib

    with _limit_threads(threads):
        fitted = lib.train_file(
            embeddings,
            label,
            output,
            kind=kind,
            layout=layout,
            covariates=list(covariates),
            groups=groups,
            folds=folds,
            c_grid=_numbers(c_values, "--C"),
            class_weights=_class_weights(class_weights),
            positive=positive,
            seed=seed,
        )
    if not quiet:
        click.echo(lib.train_summary(fitted), err=True)
        click.echo(f"vepcli: wrote {output}", err=True)


@probe.command(name="eval")
@click.argument("probe_file", metavar="PROBE", type=click.Path(exists=True, dir_okay=False))
@click.argument("embeddings", type=click.Path(exists=True, dir_okay=False))
@click.option("--label", default=None, help="Label column [default: the one the probe was trained on].")
@click.option("--bucket-by", default=None, help="Numeric column to bucket by, e.g. distance_to_nearest_tss.")
@click.option("--buckets", default="0,30000,100000", show_default=True, help="Bucket edges: [a,b) ... and >= the last.")
@click.option(
    "--plots",
    default=None,
    help="Prefix of PREFIX.roc.png and PREFIX.pr.png [default: EMBEDDINGS without its suffix, plus .probe].",
)
@click.option(
    "-o",
    "--output",
    "table_out",
    default=None,
    help="Also write the table as TSV to this file (-: TSV on stdout instead of aligned text).",
)
@click.option(
    "--bootstrap",
    type=opt.COUNT,
    default=200,
    show_default=True,
    help="Resamples for the AUROC 95% interval (0: none).",
)
@opt.seed_option()
@opt.threads_option(None, "CPU threads for numpy/scikit-learn.")
@click.option("-q", "--quiet", is_flag=True)
def eval_(probe_file, embeddings, label, bucket_by, buckets, plots, table_out, bootstrap, seed, threads, quiet) -> None:
    """AUROC and AUPRC of PROBE's decision scores on EMBEDDINGS, overall and per bucket; ROC/PR PNGs."""
    from vepcli import probe as lib

    with _limit_threads(threads):
        ev, pngs = lib.eval_file(
            probe_file, embeddings, label, bucket_by, buckets, plots, bootstrap, seed, table_out=table_out
        )
    if table_out == "-":
        click.echo(ev.table.to_csv(sep="\t", index=False, float_format="%.6g"), nl=False)
    else:
        click.echo(lib.format_table(ev.table), nl=False)
    if not quiet:
        for note in ev.notes:
            click.echo(f"vepcli: {note}", err=True)
        click.echo(f"vepcli: wrote {pngs[0]} and {pngs[1]}", err=True)


@probe.command()
@click.argument("probe_file", metavar="PROBE", type=click.Path(exists=True, dir_okay=False))
def info(probe_file) -> None:
    """Print a probe's metadata (model identity, features, label classes, CV figures) as JSON."""
    from vepcli import probe as lib

    click.echo(json.dumps(lib.load_probe(probe_file).meta, indent=1))
