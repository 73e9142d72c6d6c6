"""`loopml models card`: a model version's card, Markdown or self-contained HTML.

Registered in `infra.cli.main` under the `models` group. Importing it costs click alone: the registry and the object
store load when the command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click


@click.command("card")
@click.argument("name")
@click.argument("version", type=click.IntRange(min=1))
@click.option("--html", "as_html", is_flag=True, help="The self-contained HTML card instead of Markdown.")
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Write the card to FILE instead of printing it.",
)
@click.pass_obj
def card(obj: Any, name: str, version: int, as_html: bool, out: Path | None) -> None:
    """Print or save the model card of version VERSION of model NAME.

    The card says what the model is for (from the dataset contract), what it was trained on (dataset version,
    SHA-256, rows, profile), its algorithm and parameters, its holdout metrics with bootstrap confidence intervals,
    how it compared with the champion it was judged against, permutation feature importance, fairness across the
    contract's sensitive features, its audit trail (approval) and its limitations. The pipeline stores it beside the
    model's ONNX artefact when it registers the version; a version without a stored card gets one rendered from the
    registry's records (the numbers are the ones the pipeline stored, never recomputed).

    \b
    Examples:
      loopml models card churn 2                          Markdown on stdout
      loopml models card churn 2 --html --out card.html   a self-contained page (no network needed to view it)
    """
    from loopml_core.cards import stored_or_rendered

    backend = obj.backend
    found = stored_or_rendered(backend.registry, backend.store, name, version, as_html=as_html)
    source = found.uri or "rendered from the registry (no card stored for this version)"
    if out is None:
        click.echo(found.text, nl=False)
        click.echo(f"model card of {name} v{version}: {source}", err=True)
        return
    out.write_text(found.text, encoding="utf-8")
    click.echo(f"wrote the {'HTML' if as_html else 'Markdown'} card of {name} v{version} to {out} ({source})")
