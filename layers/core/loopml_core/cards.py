"""Model cards: what a model version is for, what it learnt from, how good it is and how sure we are, as Markdown and
as one self-contained HTML page (inline CSS and SVG, nothing fetched).

Rendered from registry records only: the model version (its metrics, the bootstrap intervals, the comparison with
the champion, permutation importance and fairness that the evaluation step computed and the register step stored),
the dataset's contract, the dataset version it was trained on and the audit records about it. Nothing is computed
from data here, so a card regenerated later says what the pipeline measured. Standard library only: the card is
written by the register function, whose core layer ships no numpy.

Both renderers walk the same list of sections, so the Markdown and the HTML always say the same thing.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from loopml_core.clock import iso
from loopml_core.contract import DatasetContract, Task
from loopml_core.errors import NotFoundError
from loopml_core.models import AuditRecord, DatasetVersion, ModelVersion

if TYPE_CHECKING:
    from loopml_core.adapters.object_store import ObjectStore
    from loopml_core.registry import Registry

MARKDOWN_NAME = "card.md"
HTML_NAME = "card.html"
SMALL_HOLDOUT_ROWS = 1000  # below this the card warns that its intervals are wide
SMALL_GROUP_ROWS = 30  # a fairness group with fewer holdout rows than this is flagged
NOT_RECORDED = "not recorded (this version was registered before LoopML computed it)"


# -- the card's content ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Chart:
    """An inline SVG figure (HTML only); the Markdown has the same numbers in the table beside it."""

    svg: str
    caption: str


Block = Paragraph | Bullets | Table | Chart


@dataclass(frozen=True)
class Section:
    title: str
    blocks: tuple[Block, ...]


@dataclass(frozen=True)
class ModelCard:
    """Everything a card shows, read from the registry (see `gather_card`)."""

    version: ModelVersion
    contract: DatasetContract | None
    contract_version: int | None
    dataset_version: DatasetVersion | None
    audit: tuple[AuditRecord, ...] = ()
    champion: int | None = None  # the version the champion alias points at now
    generated_at: str = field(default_factory=iso)

    @property
    def title(self) -> str:
        return f"Model card: {self.version.model} v{self.version.version}"


def card_keys(version: ModelVersion) -> tuple[str, str]:
    """The keys of the card's Markdown and HTML: beside the version's ONNX artefact in the artifact bucket."""
    folder = version.artifact.key.rsplit("/", 1)[0] + "/" if "/" in version.artifact.key else ""
    return folder + MARKDOWN_NAME, folder + HTML_NAME


def version_audit(records: Sequence[AuditRecord], model: str, version: int) -> list[AuditRecord]:
    """The audit records about one version: those whose subject is the version (or below it), and alias and
    deployment changes that name it."""
    subject = f"model/{model}/v{version}"
    alias_prefix = f"model/{model}/alias/"
    about = []
    for record in records:
        names_version = version in (record.details.get("to"), record.details.get("from"), record.details.get("version"))
        if (
            record.subject == subject
            or record.subject.startswith(subject + "/")
            or (record.subject.startswith(alias_prefix) and names_version)
        ):
            about.append(record)
    return about


def gather_card(registry: Registry, version: ModelVersion) -> ModelCard:
    """Read what the card of `version` shows from the registry (five reads and the model's audit records)."""
    contract: DatasetContract | None
    try:
        dataset = registry.dataset(version.model)
        contract, contract_version = registry.contract(version.model), dataset.contract_version
    except NotFoundError:
        contract, contract_version = None, None
    try:
        dataset_version: DatasetVersion | None = registry.dataset_version(version.model, version.dataset_version)
    except NotFoundError:
        dataset_version = None
    champion = registry.champion(version.model)
    records = registry.audit_records(f"model/{version.model}/")
    return ModelCard(
        version=version,
        contract=contract,
        contract_version=contract_version,
        dataset_version=dataset_version,
        audit=tuple(version_audit(records, version.model, version.version)),
        champion=champion.version if champion else None,
    )


# -- formatting ------------------------------------------------------------------------------------------------------


def _number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}f}"


def _interval(interval: dict[str, float] | None) -> str:
    if not interval:
        return "-"
    return f"{_number(interval.get('low'))} to {_number(interval.get('high'))}"


def _range(feature: Any) -> str:
    if not feature.is_numeric:
        return ", ".join(feature.values or ())
    low = "-∞" if feature.min is None else _number(feature.min, 6).rstrip("0").rstrip(".")
    high = "+∞" if feature.max is None else _number(feature.max, 6).rstrip("0").rstrip(".")
    return f"[{low}, {high}]"


def _confidence(card: ModelCard) -> str:
    confidence = card.version.evaluation_method.get("confidence", 0.95)
    return f"{float(confidence):.0%}"


# -- sections --------------------------------------------------------------------------------------------------------


def _summary(card: ModelCard) -> Section:
    v = card.version
    if card.champion == v.version:
        standing = "the champion (it answers predictions)"
    elif v.promoted:
        standing = f"promoted when registered; v{card.champion} is champion now" if card.champion else "promoted"
    else:
        standing = "not promoted"
    return Section(
        "Summary",
        (
            Paragraph(f"Status {v.status.value}, {standing}. Registered {v.created_at} by pipeline run {v.execution}."),
            Paragraph(f"Decision: {v.decision}"),
            Paragraph(f"Generated {card.generated_at} from the LoopML registry."),
        ),
    )


def _intended_use(card: ModelCard) -> Section:
    contract = card.contract
    if contract is None:
        return Section("Intended use", (Paragraph(f"The dataset '{card.version.model}' is no longer declared."),))
    blocks: list[Block] = []
    if contract.description:
        blocks.append(Paragraph(contract.description))
    blocks.append(Paragraph(f"Intended use: {contract.purpose}"))
    target = f"'{contract.target}'"
    if contract.task is Task.CLASSIFICATION and contract.target_values:
        target += f" (one of {', '.join(contract.target_values)})"
    blocks.append(Paragraph(f"Task: {contract.task.value} of {target}."))
    sensitive = set(contract.governance.sensitive_features)
    rows = tuple(
        (
            f.name,
            f.type.value,
            _range(f),
            "yes" if f.nullable else "no",
            "yes" if f.name in sensitive else "",
        )
        for f in contract.features
    )
    blocks.append(Table(("feature", "type", "range or values", "nullable", "sensitive"), rows))
    if card.version.contract_fingerprint and card.version.contract_fingerprint != contract.fingerprint():
        blocks.append(
            Paragraph(
                f"The contract has changed since this version was trained (contract version "
                f"{card.version.contract_version}, fingerprint {card.version.contract_fingerprint}); the table shows "
                f"the current one, version {card.contract_version}."
            )
        )
    return Section("Intended use", tuple(blocks))


def _profile_summary(profile: dict[str, Any], target: str) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    columns = sorted((profile.get("features") or {}).items())
    if isinstance(profile.get("target"), dict):
        columns.append((f"{target} (target)", profile["target"]))
    for name, entry in columns:
        if not isinstance(entry, dict):
            continue
        nulls = entry.get("null_fraction")
        if entry.get("kind") == "category":
            pairs = sorted(
                zip(entry.get("values") or [], entry.get("fractions") or [], strict=False), key=lambda p: -p[1]
            )
            shape = ", ".join(f"{value} {share:.0%}" for value, share in pairs[:4])
            shape += ", …" if len(pairs) > 4 else ""
        else:
            edges = [e for e in entry.get("fine_edges") or entry.get("edges") or [] if e is not None]
            shape = f"about {_number(edges[0], 2)} to {_number(edges[-1], 2)}" if edges else "-"
        rows.append((str(name), str(entry.get("kind", "-")), shape, "-" if nulls is None else f"{float(nulls):.1%}"))
    return rows


def _training_data(card: ModelCard) -> Section:
    v, d = card.version, card.dataset_version
    params = v.params
    facts = [
        f"Dataset '{v.model}' version {v.dataset_version}",
        f"training rows {_number(params.get('train_rows'))}, holdout rows {_number(params.get('holdout_rows'))}",
    ]
    if d is not None:
        facts += [
            f"SHA-256 {d.sha256}",
            f"{_number(d.rows)} rows, stored as {d.format} at {d.object.uri} (S3 version {d.object.version_id})",
            f"validated under contract version {d.contract_version}",
        ]
    else:
        facts.append("the dataset version is no longer in the registry")
    if v.contract_fingerprint:
        facts.append(f"contract version {v.contract_version} (fingerprint {v.contract_fingerprint}) at registration")
    blocks: list[Block] = [Bullets(tuple(facts))]
    profile = d.profile if d is not None else None
    if profile:
        blocks.append(Paragraph("Profile of the dataset version, from its validation:"))
        blocks.append(
            Table(
                ("column", "kind", "values", "nulls"),
                tuple(_profile_summary(profile, card.contract.target if card.contract else "target")),
            )
        )
    else:
        blocks.append(Paragraph("The registry holds no profile of this dataset version."))
    return Section("Training data", tuple(blocks))


def _algorithm(card: ModelCard) -> Section:
    v = card.version
    params = {k: value for k, value in v.params.items() if k not in ("train_rows", "holdout_rows")}
    rows = tuple((key, str(value)) for key, value in sorted(params.items()))
    facts = (
        f"ONNX artefact {v.artifact.uri} (S3 version {v.artifact.version_id})",
        f"code version {v.code_version}",
        f"ONNX parity with scikit-learn: {v.parity.get('message', 'not recorded')}",
    )
    return Section("Algorithm and parameters", (Table(("parameter", "value"), rows), Bullets(facts)))


def _metrics(card: ModelCard) -> Section:
    v = card.version
    confidence = _confidence(card)
    method = v.evaluation_method
    rows = tuple(
        (name, _number(value), _interval(v.metric_intervals.get(name)) if v.metric_intervals else "-")
        for name, value in sorted(v.metrics.items())
    )
    blocks: list[Block] = [Table(("metric", "holdout", f"{confidence} interval"), rows)]
    if v.metric_intervals:
        blocks.append(
            Paragraph(
                f"Percentile bootstrap: {_number(method.get('bootstrap_resamples'))} resamples of the "
                f"{_number(v.params.get('holdout_rows'))} holdout rows drawn with replacement (seed "
                f"{method.get('seed', '-')})."
            )
        )
        chart = _interval_chart(v)
        if chart is not None:
            blocks.append(chart)
    else:
        blocks.append(Paragraph(f"Confidence intervals: {NOT_RECORDED}."))
    return Section("Holdout metrics", tuple(blocks))


def _comparison(card: ModelCard) -> Section:
    v = card.version
    if v.champion_metrics is None:
        judged = (
            f"v{v.champion_version}, whose model no longer fits the contract"
            if v.champion_version is not None
            else "no champion: this was the model's first version"
        )
        return Section("Comparison with the champion", (Paragraph(f"Judged against {judged}."), Paragraph(v.decision)))
    champion = f"v{v.champion_version}" if v.champion_version is not None else "the champion of the time"
    intervals = v.champion_metric_intervals or {}
    rows = tuple(
        (
            name,
            _number(value),
            _number(v.champion_metrics.get(name)),
            _number(value - v.champion_metrics[name]) if name in v.champion_metrics else "-",
            _interval(intervals.get(name)),
        )
        for name, value in sorted(v.metrics.items())
    )
    header = ("metric", f"v{v.version}", champion, "difference", f"{champion} {_confidence(card)} interval")
    blocks: list[Block] = [
        Paragraph(f"Both scored on the same {_number(v.params.get('holdout_rows'))} holdout rows."),
        Table(header, rows),
    ]
    comparison = v.comparison
    if comparison and comparison.get("interval"):
        better = "higher" if comparison.get("higher_is_better") else "lower"
        blocks.append(
            Paragraph(
                f"{comparison['metric']} difference v{v.version} minus {champion}: "
                f"{_number(comparison.get('difference'))}, {_confidence(card)} paired bootstrap interval "
                f"{_interval(comparison['interval'])} "
                f"({better} is better)."
            )
        )
    blocks.append(Paragraph(f"Decision: {v.decision}"))
    return Section("Comparison with the champion", tuple(blocks))


def _importance(card: ModelCard) -> Section:
    v = card.version
    if not v.feature_importance:
        return Section("Feature importance", (Paragraph(f"Permutation importance: {NOT_RECORDED}."),))
    primary = (v.comparison or {}).get("metric") or ("accuracy" if v.task == Task.CLASSIFICATION.value else "rmse")
    repeats = v.feature_importance[0].get("repeats", "-")
    rows = tuple(
        (str(entry["feature"]), _number(entry.get("mean")), _number(entry.get("std"))) for entry in v.feature_importance
    )
    return Section(
        "Feature importance",
        (
            Paragraph(
                f"Permutation importance on the holdout: how much {primary} worsens when one feature's column is "
                f"shuffled, mean and standard deviation over {repeats} shuffles. Near zero: the model does not rely "
                "on the feature (or another feature carries the same information)."
            ),
            Table(("feature", f"{primary} drop (mean)", "std"), rows),
            _importance_chart(v.feature_importance, primary),
        ),
    )


def _fairness(card: ModelCard) -> Section:
    v, contract = card.version, card.contract
    fairness = v.fairness
    if not fairness:
        if contract is not None and contract.governance.sensitive_features and v.task == Task.CLASSIFICATION.value:
            text = f"Fairness metrics: {NOT_RECORDED}."
        elif v.task == Task.REGRESSION.value:
            text = "Fairness metrics apply to classification; this is a regression model."
        else:
            text = (
                "The contract declares no sensitive feature (governance.sensitive_features), so no group fairness was "
                "measured."
            )
        return Section("Fairness", (Paragraph(text),))
    blocks: list[Block] = [
        Paragraph(
            "Demographic parity difference: the largest minus the smallest share of a group predicted positive. "
            "Equalized-odds difference: the larger of the spreads of true- and false-positive rates over the groups. "
            f"0 is parity. Convention: {fairness.get('convention', '-')}."
        )
    ]
    for name, entry in fairness.get("features", {}).items():
        blocks.append(
            Paragraph(
                f"'{name}': demographic parity difference {_number(entry.get('demographic_parity_difference'))}, "
                f"equalized-odds difference {_number(entry.get('equalized_odds_difference'))}."
            )
        )
        for per_class in entry.get("per_class", []):
            rows = tuple(
                (
                    str(group["group"]) + (" (few rows)" if group["rows"] < SMALL_GROUP_ROWS else ""),
                    _number(group["rows"]),
                    _number(group["selection_rate"]),
                    _number(group.get("true_positive_rate")),
                    _number(group.get("false_positive_rate")),
                    _number(group.get("accuracy")),
                )
                for group in per_class.get("groups", [])
            )
            header = ("group", "rows", f"selected '{per_class.get('positive')}'", "TPR", "FPR", "accuracy")
            blocks.append(Table(header, rows))
    return Section("Fairness", tuple(blocks))


def _approval(card: ModelCard) -> Section:
    rows = tuple(
        (
            str(r.seq),
            r.at,
            r.actor,
            r.action,
            r.subject.rsplit("/", 2)[-2] + "/" + r.subject.rsplit("/", 1)[-1],
            _details(r),
        )
        for r in card.audit
    )
    decided = [r for r in card.audit if "approv" in r.action or "reject" in r.action]
    blocks: list[Block] = [
        Paragraph(
            "Every audit record about this version, oldest first (hash-chained; `loopml audit verify` checks them)."
            + ("" if decided else " No approval decision is recorded for it: it was registered by the pipeline.")
        ),
        Table(("seq", "at", "actor", "action", "subject", "details"), rows)
        if rows
        else Paragraph("No audit record names this version."),
    ]
    return Section("Approval", tuple(blocks))


def _details(record: AuditRecord) -> str:
    wanted = ("from", "to", "reason", "decision", "mode", "weight", "execution")
    shown = [f"{k}={record.details[k]}" for k in wanted if record.details.get(k) not in (None, "")]
    text = "; ".join(shown)
    return text if len(text) <= 160 else text[:157] + "…"


def _limitations(card: ModelCard) -> Section:
    v, contract = card.version, card.contract
    items: list[str] = []
    if contract is not None:
        bounded = [
            f"{f.name} in {_range(f)}" for f in contract.features if f.is_numeric and (f.min, f.max) != (None, None)
        ]
        open_ended = [f.name for f in contract.features if f.is_numeric and f.min is None and f.max is None]
        categories = [f"{f.name} in {{{', '.join(f.values or ())}}}" for f in contract.features if not f.is_numeric]
        if bounded or categories:
            items.append(
                "Validated only for records within the contract: " + "; ".join([*bounded, *categories]) + ". "
                "Outside these ranges and categories it was never tested"
                + (
                    " (the API refuses such values)."
                    if contract.serving.out_of_range.value == "reject"
                    else " (the API accepts them: the model extrapolates)."
                )
            )
        if open_ended:
            items.append(
                f"No range is declared for {', '.join(open_ended)}: the model saw only the training data's values."
            )
    holdout = v.params.get("holdout_rows")
    if isinstance(holdout, int) and holdout < SMALL_HOLDOUT_ROWS:
        items.append(
            f"The holdout has {holdout:,} rows: metric intervals are wide, and small differences between versions "
            "may be noise."
        )
    if v.comparison and v.comparison.get("interval"):
        interval = v.comparison["interval"]
        if interval.get("low", 0) <= 0 <= interval.get("high", 0):
            items.append(
                f"The {_confidence(card)} interval of the difference with v{v.champion_version} includes 0: the "
                "holdout cannot tell the two apart with confidence."
            )
    small = sorted(
        {
            f"{name}={group['group']}"
            for name, entry in ((v.fairness or {}).get("features") or {}).items()
            for per_class in entry.get("per_class", [])
            for group in per_class.get("groups", [])
            if group["rows"] < SMALL_GROUP_ROWS
        }
    )
    if small:
        items.append(
            f"Fairness groups with under {SMALL_GROUP_ROWS} holdout rows: {', '.join(small)}; their rates are noisy."
        )
    items.append(
        "Holdout metrics describe data like the training data; live performance is watched by the drift and "
        "performance checks (`loopml drift check`)."
    )
    return Section("Limitations", (Bullets(tuple(items)),))


def sections(card: ModelCard) -> list[Section]:
    """The card's sections, in order, as both renderers write them."""
    return [
        _summary(card),
        _intended_use(card),
        _training_data(card),
        _algorithm(card),
        _metrics(card),
        _comparison(card),
        _importance(card),
        _fairness(card),
        _approval(card),
        _limitations(card),
    ]


# -- charts ----------------------------------------------------------------------------------------------------------


def _importance_chart(importance: Sequence[dict[str, Any]], metric: str) -> Chart:
    """Horizontal bars of mean drop with a whisker of ± one standard deviation."""
    label_width, bar_width, row = 170, 360, 22
    height = row * len(importance) + 30
    ends = [abs(float(e.get("mean", 0))) + float(e.get("std", 0)) for e in importance]
    negative = max([0.0, *(float(e.get("std", 0)) - float(e.get("mean", 0)) for e in importance)])
    scale = bar_width / ((max(ends) + negative) or 1.0)
    zero = label_width + negative * scale  # room left of zero for negative drops and their whiskers
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_width + bar_width + 90}" height="{height}" '
        f'role="img" aria-label="permutation importance">',
        f'<line x1="{zero:.1f}" y1="4" x2="{zero:.1f}" y2="{height - 22}" stroke="#888"/>',
    ]
    for i, entry in enumerate(importance):
        y = 6 + i * row
        mean, std = float(entry.get("mean", 0)), float(entry.get("std", 0))
        x0, x1 = sorted((zero, zero + mean * scale))
        name = html.escape(str(entry["feature"]))
        parts += [
            f'<text x="{label_width - 6}" y="{y + 13}" text-anchor="end">{name}</text>',
            f'<rect x="{x0:.1f}" y="{y + 3}" width="{max(x1 - x0, 0.5):.1f}" height="14" fill="#4e79a7"/>',
            f'<line x1="{zero + (mean - std) * scale:.1f}" y1="{y + 10}" x2="{zero + (mean + std) * scale:.1f}" '
            f'y2="{y + 10}" stroke="#222"/>',
            f'<text x="{max(x1, zero + (mean + std) * scale) + 6:.1f}" y="{y + 13}">{mean:.4f}</text>',
        ]
    parts.append(
        f'<text x="{label_width}" y="{height - 6}" fill="#555">drop in {html.escape(metric)} when shuffled</text></svg>'
    )
    return Chart("".join(parts), f"Permutation importance ({metric} drop, ± one standard deviation)")


def _interval_chart(version: ModelVersion) -> Chart | None:
    """Each metric in [0, 1] (accuracy, F1, ROC AUC, R²) as a point with its interval, on one shared axis."""
    shown = [
        (name, float(value), version.metric_intervals[name])
        for name, value in sorted(version.metrics.items())
        if name in version.metric_intervals and name in ("accuracy", "f1_macro", "roc_auc", "r2") and 0 <= value <= 1
    ]
    if not shown:
        return None
    label_width, axis, row = 110, 400, 22
    height = row * len(shown) + 30
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_width + axis + 30}" height="{height}" role="img" '
        'aria-label="holdout metrics with intervals">'
    ]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = label_width + tick * axis
        parts.append(f'<line x1="{x:.1f}" y1="4" x2="{x:.1f}" y2="{height - 22}" stroke="#ddd"/>')
        parts.append(f'<text x="{x:.1f}" y="{height - 6}" text-anchor="middle" fill="#555">{tick:g}</text>')
    for i, (name, value, interval) in enumerate(shown):
        y = 6 + i * row + 10
        low = label_width + max(0.0, float(interval["low"])) * axis
        high = label_width + min(1.0, float(interval["high"])) * axis
        parts += [
            f'<text x="{label_width - 6}" y="{y + 4}" text-anchor="end">{html.escape(name)}</text>',
            f'<line x1="{low:.1f}" y1="{y}" x2="{high:.1f}" y2="{y}" stroke="#4e79a7" stroke-width="3"/>',
            f'<circle cx="{label_width + value * axis:.1f}" cy="{y}" r="4" fill="#e15759"/>',
        ]
    parts.append("</svg>")
    return Chart("".join(parts), "Holdout metrics (dot) and their bootstrap intervals (bar)")


# -- renderers -------------------------------------------------------------------------------------------------------


def _markdown_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(card: ModelCard) -> str:
    """The card as Markdown (GitHub-flavoured tables)."""
    lines = [f"# {card.title}", ""]
    for section in sections(card):
        lines += [f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Paragraph):
                lines += [block.text, ""]
            elif isinstance(block, Bullets):
                lines += [f"- {item}" for item in block.items] + [""]
            elif isinstance(block, Table):
                lines.append("| " + " | ".join(_markdown_cell(h) for h in block.header) + " |")
                lines.append("|" + "---|" * len(block.header))
                lines += ["| " + " | ".join(_markdown_cell(c) for c in row) + " |" for row in block.rows]
                lines.append("")
    return "\n".join(lines).rstrip() + "\n"


STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em;border-bottom:2px solid #4e79a7;padding-bottom:.3em}h2{font-size:1.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;
font-size:.92em}th{background:#f2f4f8}td{font-variant-numeric:tabular-nums}figure{margin:.6em 0}
figcaption{font-size:.85em;color:#555}svg text{font-size:12px;font-family:inherit}
""".strip()


def render_html(card: ModelCard) -> str:
    """The card as one self-contained HTML page: inline CSS and SVG, no script, nothing loaded from elsewhere."""
    e = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(card.title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{e(card.title)}</h1>",
    ]
    for section in sections(card):
        slug = section.title.lower().replace(" ", "-")
        out.append(f'<section id="{e(slug)}"><h2>{e(section.title)}</h2>')
        for block in section.blocks:
            if isinstance(block, Paragraph):
                out.append(f"<p>{e(block.text)}</p>")
            elif isinstance(block, Bullets):
                out.append("<ul>" + "".join(f"<li>{e(item)}</li>" for item in block.items) + "</ul>")
            elif isinstance(block, Table):
                head = "".join(f"<th>{e(h)}</th>" for h in block.header)
                body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in block.rows)
                out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            else:
                out.append(f"<figure>{block.svg}<figcaption>{e(block.caption)}</figcaption></figure>")
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def stored_or_rendered(
    registry: Registry, store: ObjectStore, model: str, version: int, *, as_html: bool
) -> StoredText:
    """The card of a model version: the one the register step stored beside its artefact, else rendered now from
    the registry (a version registered before cards existed, or a card deleted since). NotFoundError for an unknown
    model or version."""
    record = registry.model_version(model, version)
    markdown_key, html_key = card_keys(record)
    key = html_key if as_html else markdown_key
    try:
        text = store.get(record.artifact.bucket, key).decode("utf-8")
        return StoredText(text, f"s3://{record.artifact.bucket}/{key}")
    except NotFoundError:
        card = gather_card(registry, record)
        return StoredText(render_html(card) if as_html else render_markdown(card), None)


@dataclass(frozen=True)
class StoredText:
    """A card's text, and where it was stored (None: rendered from the registry because none was)."""

    text: str
    uri: str | None
