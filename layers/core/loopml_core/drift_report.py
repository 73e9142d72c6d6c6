"""A drift check's result as one self-contained HTML page, stored beside the model and opened offline.

Standard library only. The page is built from the check's summary document alone: PSI and test results per column,
bucket shares for baseline and window, live performance per labelled window. It never embeds data rows, so it stays
small (tens of kilobytes for a typical model, well under a megabyte for twenty columns of a hundred buckets), unlike
reports that ship the raw sample to the browser. Nothing is loaded from elsewhere: the CSS is inline, the plots are
SVG drawn here, and there is no script. Everything taken from the document is escaped; names and bucket labels come
from users' data.

The document (fields marked ? may be missing or null):

    {
      "model": "churn", "version": 3?, "status": "ok" | "drift" | "insufficient-data" | "no-champion",
      "checked_at": "2026-11-24T10:00:00+00:00",
      "window"?: {"start": "..."?, "end": "...", "objects": 12},
      "rows"?: 12345, "min_rows"?: 500,
      "thresholds"?: {"psi": 0.2, "p_value": 0.01, "min_effect": 0.1},
      "features"?: {"<name>": <column>},
      "prediction"?: <column>,
      "drifted"?: ["<name>", ...],
      "performance"?: {"metric": "f1_macro", "higher_is_better": true, "holdout": 0.81, "tolerance": 0.1,
                       "windows": [{"version": 3, "window": "2026-11-24", "labels": 500, "value": 0.78}, ...],
                       "latest"?: {... one window ...}, "dropped": false},
      "retraining"?: {"decision": "started" | "skipped", "reason": "...", "execution": "name"?},
      "report"?: "s3://bucket/reports/churn/....html",
      "notes"?: ["what the check noticed on the way", ...]
    }

where a column is {"kind", "psi", "test", "statistic", "p_value", "effect", "drifted", "buckets", "expected",
"observed"}, `expected` and `observed` being the baseline's and the window's share per bucket.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Any

PREDICTION = "prediction"
LABEL_CHARS = 18  # longer bucket and window labels are cut on the axis; the full text is in a tooltip

_STATUS_BADGES = {
    "drift": ("drift", "bad"),
    "ok": ("ok", "good"),
    "insufficient-data": ("insufficient data", "muted"),
    "no-champion": ("no champion", "muted"),
}
_TEST_NAMES = {"ks": "KS", "chi2": "χ²"}
_MISSING = "\N{EM DASH}"
_ERROR_METRICS = {"rmse", "mae"}  # lower is better, for documents that do not say

_CHART_WIDTH = 960
_PLOT_HEIGHT = 200
_CHAR_PX = 6.0  # an average glyph of the 11 px axis font: enough to lay labels out without measuring them
_ROTATED_LABEL_GAP = 17.0  # at 45 degrees, labels this far apart sit one 11 px line (and a bit) apart
_MIN_LEFT = 56  # room for the y tick labels
_BAR_MAX_WIDTH = 36.0
_VERSION_COLOURS = 6  # .v0 ... .v5 in the stylesheet, reused in turn

_STYLE = """
*{box-sizing:border-box}
body{margin:0;background:#f4f6f8;color:#1f2933;font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,
"Helvetica Neue",Arial,sans-serif}
main{max-width:1040px;margin:0 auto;padding:24px 20px 48px}
h1{font-size:24px;margin:0 0 4px;display:flex;align-items:center;gap:12px;flex-wrap:wrap}
h2{font-size:18px;margin:32px 0 12px}
h3{font-size:16px;margin:0 0 4px;display:flex;align-items:center;gap:8px;flex-wrap:wrap}
p{margin:6px 0}
code{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:#eef1f4;padding:1px 4px;
border-radius:3px;overflow-wrap:anywhere}
a{color:#1c5fa8}
.card{background:#fff;border:1px solid #dde3e9;border-radius:8px;padding:16px 20px;margin:12px 0}
.badge{display:inline-block;border-radius:999px;padding:2px 12px;font-size:13px;font-weight:600;color:#fff;
letter-spacing:.02em;text-transform:uppercase}
.badge.bad{background:#c62828}.badge.good{background:#2e7d32}.badge.muted{background:#6b7785}
.tag{white-space:nowrap;font-size:12px;font-weight:500;color:#52606d;background:#eef1f4;border-radius:4px;
padding:1px 6px}
.flag{font-size:12px;font-weight:600;color:#fff;background:#c62828;border-radius:4px;padding:1px 6px}
.lead{font-size:15px}
.facts{display:grid;grid-template-columns:repeat(auto-fill,minmax(220px,1fr));gap:10px 24px;margin:14px 0 0}
.facts div{min-width:0}.facts .wide{grid-column:span 2}
.facts dt{font-size:12px;color:#52606d;text-transform:uppercase;letter-spacing:.04em}
.facts dd{margin:0;font-weight:500;overflow-wrap:anywhere}
.rule{color:#3e4c59;margin-top:12px}
.note{border-left:4px solid #6b7785;background:#f8f9fa;padding:8px 12px;margin:12px 0 0;border-radius:0 6px 6px 0}
.note.bad{border-color:#c62828;background:#fdecea}.note.good{border-color:#2e7d32;background:#edf7ee}
.note.info{border-color:#1c5fa8;background:#e8f1fb}
.note ul{margin:4px 0 0;padding-left:20px}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{padding:6px 10px;border-bottom:1px solid #e4e8ec;text-align:left;white-space:nowrap}
th{font-size:12px;color:#52606d;text-transform:uppercase;letter-spacing:.04em;background:#f8f9fa}
td.num,th.num{text-align:right}
td.name{white-space:normal;overflow-wrap:break-word;max-width:280px}
td.shift{white-space:normal;min-width:180px}
tr.drifted td{background:#fdecea}
tr.drifted td:first-child{box-shadow:inset 4px 0 #c62828}
.scroll{overflow-x:auto}
.column{scroll-margin-top:12px}
.column.drifted{border-color:#e57373;box-shadow:inset 4px 0 #c62828}
.stats{color:#3e4c59}
.why{color:#b71c1c}
.sub{margin-top:20px}
svg{display:block;width:100%;height:auto;margin-top:8px;font-size:11px;fill:#52606d}
svg .grid{stroke:#e4e8ec;fill:none}
svg .axis{stroke:#9aa5b1;fill:none}
svg .rot text{text-anchor:end}
svg .mid text{text-anchor:middle}
svg .yt{text-anchor:end}
svg .b0{fill:#a9b8c8}svg .b1{fill:#1c5fa8}
svg .hit rect{fill:transparent}svg .hit rect:hover{fill:#1f29330f}
svg path.line{fill:none;stroke-width:2}
svg .ref{fill:none;stroke:#3e4c59;stroke-width:1.5}
svg .holdout{stroke-dasharray:6 4}svg .limit{stroke-dasharray:2 3;stroke:#c62828}
svg .reflabel{font-weight:600;fill:#3e4c59}svg .limitlabel{font-weight:600;fill:#c62828}
svg .v0{stroke:#1c5fa8;fill:#1c5fa8}svg .v1{stroke:#e8590c;fill:#e8590c}svg .v2{stroke:#2b8a3e;fill:#2b8a3e}
svg .v3{stroke:#862e9c;fill:#862e9c}svg .v4{stroke:#c2255c;fill:#c2255c}svg .v5{stroke:#5c7cfa;fill:#5c7cfa}
svg circle{stroke:#fff;stroke-width:1}
footer{margin-top:32px;color:#6b7785;font-size:12px}
"""


@dataclass(frozen=True)
class _Column:
    name: str
    anchor: str
    is_prediction: bool
    kind: str
    psi: float | None
    test: str
    statistic: float | None
    p_value: float | None
    effect: float | None
    drifted: bool
    buckets: list[str]
    expected: list[float]
    observed: list[float]

    def largest_shift(self) -> int | None:
        """The bucket whose share moved most, if any moved."""
        shifts = [abs(o - e) for e, o in zip(self.expected, self.observed, strict=True)]
        if not shifts or max(shifts) == 0:
            return None
        return shifts.index(max(shifts))


@dataclass(frozen=True)
class _AxisLabels:
    """How category labels sit under an x axis: level and centred, or turned 45 degrees and thinned to fit."""

    shown: list[str]
    rotated: bool
    step: int
    depth: float  # the height they take below the axis
    overhang: float  # how far the first one reaches left of its slot's centre


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, Sequence) and not isinstance(value, str) else []


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return int(value)


def _text(value: Any, missing: str = _MISSING) -> str:
    return missing if value is None or value == "" else str(value)


def _fixed(value: Any, digits: int = 3) -> str:
    number = _as_float(value)
    if number is None:
        return _MISSING
    if math.isnan(number):
        return "n/a"
    if math.isinf(number):
        return "∞" if number > 0 else "-∞"
    return f"{number:.{digits}f}"


def _p_value(value: Any) -> str:
    """Three significant digits, scientific below 0.001 (`3.2e-12`); an underflowed zero as `< 1e-300`."""
    p = _as_float(value)
    if p is None:
        return _MISSING
    if math.isnan(p):
        return "n/a"
    if p <= 0:
        return "< 1e-300"
    if p < 1e-3:
        mantissa, exponent = f"{p:.1e}".split("e")
        return f"{mantissa}e{int(exponent)}"
    return f"{p:.3g}"


def _percent(share: float) -> str:
    return f"{share * 100:.1f}%"


def _metric(value: float) -> str:
    """Scores to three decimals; errors in the target's own units (an RMSE of 31,520.4) by their size."""
    return f"{value:.3f}" if abs(value) < 100 else f"{value:,.1f}"


def _count(value: Any) -> str:
    number = _as_int(value)
    return _MISSING if number is None else f"{number:,}"


def _moment(value: Any) -> str:
    """An ISO timestamp (or a datetime) as `2026-11-24 10:00:00 UTC`; anything unparseable as it came."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return value
    else:
        return _text(value)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def _truncate(label: str, limit: int = LABEL_CHARS) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def _coordinate(value: float) -> str:
    """One decimal and no trailing zeros: plots are most of the page, so every byte of a coordinate counts."""
    text = f"{round(value, 1) + 0.0:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _tick_text(value: float) -> str:
    return f"{round(value, 6):g}"


def _shares(values: Any, length: int) -> list[float]:
    """Exactly `length` finite, non-negative shares: missing, null or broken entries count as zero."""
    items = _list(values)
    shares = []
    for index in range(length):
        share = _as_float(items[index]) if index < len(items) else None
        shares.append(share if share is not None and math.isfinite(share) and share > 0 else 0.0)
    return shares


def _column(name: str, entry: Mapping[str, Any], anchor: str, is_prediction: bool, listed: bool) -> _Column:
    buckets = [_text(label, "(blank)") for label in _list(entry.get("buckets"))]
    if not buckets:  # no labels recorded: number the buckets so the shares can still be drawn
        length = max(len(_list(entry.get("expected"))), len(_list(entry.get("observed"))))
        buckets = [str(index + 1) for index in range(length)]
    return _Column(
        name=name,
        anchor=anchor,
        is_prediction=is_prediction,
        kind=_text(entry.get("kind")),
        psi=_as_float(entry.get("psi")),
        test=_text(entry.get("test")),
        statistic=_as_float(entry.get("statistic")),
        p_value=_as_float(entry.get("p_value")),
        effect=_as_float(entry.get("effect")),
        drifted=bool(entry.get("drifted")) or listed,
        buckets=buckets,
        expected=_shares(entry.get("expected"), len(buckets)),
        observed=_shares(entry.get("observed"), len(buckets)),
    )


def _columns(document: Mapping[str, Any]) -> list[_Column]:
    """Features in document order, then the prediction."""
    listed = {str(name) for name in _list(document.get("drifted"))}
    features = _mapping(document.get("features"))
    columns = [
        _column(str(name), entry, f"col-{index}", False, str(name) in listed)
        for index, (name, entry) in enumerate(features.items())
        if isinstance(entry, Mapping)
    ]
    prediction = document.get(PREDICTION)
    if isinstance(prediction, Mapping):
        columns.append(_column(PREDICTION, prediction, "col-prediction", True, PREDICTION in listed))
    return columns


def _by_urgency(columns: Sequence[_Column]) -> list[_Column]:
    """Drifted first, then by PSI, largest first; columns without a PSI last."""

    def urgency(column: _Column) -> tuple[bool, float]:
        psi = column.psi if column.psi is not None and not math.isnan(column.psi) else -math.inf
        return (not column.drifted, -psi)

    return sorted(columns, key=urgency)


def _rule(thresholds: Mapping[str, Any], tested: int) -> str:
    psi, p_value, min_effect = (thresholds.get(key) for key in ("psi", "p_value", "min_effect"))
    corrected = ""
    p = _as_float(p_value)
    if tested > 0 and p is not None:
        corrected = f" ({tested} here, so {p / tested:.2g})"
    return (
        f"A column drifts when its PSI exceeds {_text(psi)}, or its KS/chi² p-value is under {_text(p_value)} "
        f"divided by the number of columns tested{corrected} and its effect is at least {_text(min_effect)}."
    )


def _status_sentence(document: Mapping[str, Any], columns: Sequence[_Column]) -> tuple[str, str]:
    """What happened, in one sentence, and the note style it deserves."""
    status = document.get("status")
    model = escape(_text(document.get("model")))
    if status == "no-champion":
        return (
            f"Model <b>{model}</b> has no champion version, so there is no training baseline to compare live "
            "traffic with. Promote a version to champion; the next check compares traffic with its profile.",
            "muted",
        )
    if status == "insufficient-data":
        rows, minimum = document.get("rows"), document.get("min_rows")
        arrived = "Too few rows" if rows is None else f"Only <b>{_count(rows)}</b> rows"
        judged = "" if minimum is None else f" and drift is judged from <b>{_count(minimum)}</b> rows on"
        return (
            f"{arrived} arrived in this window{judged}: statistics on fewer rows are too noisy to act on, "
            "so no column was compared.",
            "muted",
        )
    drifted = [c for c in columns if c.drifted]
    if drifted:
        names = ", ".join(f"<b>{escape(c.name)}</b>" for c in _by_urgency(drifted))
        return f"{len(drifted)} of {len(columns)} columns drifted: {names}.", "bad"
    if not columns:
        return "No columns were compared in this check.", "muted"
    return f"None of the {len(columns)} columns drifted.", "good"


def _retraining(retraining: Any) -> str:
    if not isinstance(retraining, Mapping):
        return ""
    decision = _text(retraining.get("decision"), "unknown")
    text = f"<b>Retraining {escape(decision)}</b>"
    if retraining.get("reason"):
        text += f": {escape(str(retraining['reason']))}"
    if retraining.get("execution"):
        text += f" (execution <code>{escape(str(retraining['execution']))}</code>)"
    return f'<p class="note {"info" if decision == "started" else "muted"}">{text}.</p>'


def _fact(term: str, value: str, wide: bool = False) -> str:
    opening = '<div class="wide">' if wide else "<div>"
    return f"{opening}<dt>{term}</dt><dd>{value}</dd></div>"


def _window_span(window: Mapping[str, Any]) -> str | None:
    start, end = window.get("start"), window.get("end")
    if not start and not end:
        return None
    span = f"{_moment(start)} to {_moment(end)}" if start else f"everything captured up to {_moment(end)}"
    if window.get("objects") is not None:
        span += f" ({_count(window.get('objects'))} capture files)"
    return span


def _facts(document: Mapping[str, Any]) -> str:
    """The check's particulars; those the document does not record are left out rather than shown empty."""
    version = document.get("version")
    facts = [_fact("Champion version", "none" if version is None else f"v{escape(str(version))}")]
    facts.append(_fact("Checked at", escape(_moment(document.get("checked_at")))))
    span = _window_span(_mapping(document.get("window")))
    if span is not None:
        facts.append(_fact("Window", escape(span), wide=True))
    if document.get("rows") is not None:
        minimum = f" (minimum {_count(document['min_rows'])})" if document.get("min_rows") is not None else ""
        facts.append(_fact("Rows counted", f"{_count(document['rows'])}{minimum}"))
    return f'<dl class="facts">{"".join(facts)}</dl>'


def _notes(notes: Any) -> str:
    """What the check noticed on the way (unreadable capture batches, a window already recorded)."""
    items = "".join(f"<li>{escape(str(note))}</li>" for note in _list(notes) if note)
    return f'<div class="note muted"><b>Notes</b><ul>{items}</ul></div>' if items else ""


def _header(document: Mapping[str, Any], columns: Sequence[_Column]) -> str:
    status = _text(document.get("status"), "unknown")
    label, tone = _STATUS_BADGES.get(status, (status, "muted"))
    sentence, sentence_tone = _status_sentence(document, columns)
    thresholds = document.get("thresholds")
    rule = f'<p class="rule">{escape(_rule(thresholds, len(columns)))}</p>' if isinstance(thresholds, Mapping) else ""
    return (
        '<header class="card">'
        f'<h1>Drift report: {escape(_text(document.get("model")))} <span class="badge {tone}">{escape(label)}</span>'
        "</h1>"
        f'<p class="lead note {sentence_tone}">{sentence}</p>'
        f"{_facts(document)}{rule}"
        f"{_retraining(document.get('retraining'))}{_notes(document.get('notes'))}"
        "</header>"
    )


def _display_name(column: _Column) -> str:
    name = escape(column.name)
    return f'{name} <span class="tag">model output</span>' if column.is_prediction else name


def _shift_text(column: _Column) -> str:
    index = column.largest_shift()
    if index is None:
        return _MISSING
    label = column.buckets[index]
    before, after = column.expected[index], column.observed[index]
    return f'<span title="{escape(label)}">{escape(_truncate(label))}</span> {_percent(before)} → {_percent(after)}'


def _summary(columns: Sequence[_Column]) -> str:
    if not columns:
        return ""
    heads = "".join(
        f'<th class="{"num" if numeric else ""}">{head}</th>'
        for head, numeric in (
            ("Column", False),
            ("Kind", False),
            ("PSI", True),
            ("Test", False),
            ("Statistic", True),
            ("p-value", True),
            ("Effect", True),
            ("Drifted", False),
            ("Largest shift<br>(training → now)", False),
        )
    )
    rows = []
    for column in _by_urgency(columns):
        cells = [
            f'<td class="name"><a href="#{column.anchor}">{_display_name(column)}</a></td>',
            f"<td>{escape(column.kind)}</td>",
            f'<td class="num">{_fixed(column.psi)}</td>',
            f"<td>{escape(_TEST_NAMES.get(column.test, column.test))}</td>",
            f'<td class="num">{_fixed(column.statistic)}</td>',
            f'<td class="num">{escape(_p_value(column.p_value))}</td>',
            f'<td class="num">{_fixed(column.effect)}</td>',
            f"<td>{'<b>yes</b>' if column.drifted else 'no'}</td>",
            f'<td class="shift">{_shift_text(column)}</td>',
        ]
        rows.append(f'<tr class="{"drifted" if column.drifted else "steady"}">{"".join(cells)}</tr>')
    return (
        '<section id="summary"><h2>Columns</h2><div class="card scroll">'
        f"<table><thead><tr>{heads}</tr></thead><tbody>{''.join(rows)}</tbody></table></div></section>"
    )


def _ticks(low: float, high: float, count: int = 4) -> list[float]:
    """Round-numbered ticks (steps of 1, 2, 2.5 or 5 times a power of ten) covering [low, high]."""
    if not high > low:
        high = low + 1.0
    raw = (high - low) / count
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * magnitude >= raw * (1 - 1e-9))
    first = math.floor(low / step + 1e-9)
    last = math.ceil(high / step - 1e-9)
    return [round(i * step, 12) for i in range(first, last + 1)]


def _axis_labels(labels: Sequence[str], slot: float) -> _AxisLabels:
    shown = [_truncate(label) for label in labels]
    longest = max((len(label) for label in shown), default=0) * _CHAR_PX
    if longest <= slot - 6:
        return _AxisLabels(shown, rotated=False, step=1, depth=24.0, overhang=longest / 2)
    reach = longest * math.sqrt(0.5)
    step = max(1, math.ceil(_ROTATED_LABEL_GAP / slot))
    return _AxisLabels(shown, rotated=True, step=step, depth=reach + 18, overhang=reach)


def _fit_slots(labels: Sequence[str], right_margin: float) -> tuple[float, float, _AxisLabels]:
    """The left margin and slot width that leave room for the first label, and the labels laid out in them."""
    left = float(_MIN_LEFT)
    slot = (_CHART_WIDTH - left - right_margin) / max(len(labels), 1)
    axis = _axis_labels(labels, slot)
    for _ in range(2):  # widening the margin narrows the slots, which can turn labels; twice settles it
        left = max(float(_MIN_LEFT), math.ceil(axis.overhang - slot / 2 + 8))
        slot = (_CHART_WIDTH - left - right_margin) / max(len(labels), 1)
        axis = _axis_labels(labels, slot)
    return left, slot, axis


def _x_axis(axis: _AxisLabels, full: Sequence[str], left: float, slot: float, baseline: float) -> str:
    texts = []
    y = baseline + 14
    for index in range(0, len(axis.shown), axis.step):
        x = _coordinate(left + slot * (index + 0.5))
        label = escape(axis.shown[index])
        tooltip = f"<title>{escape(full[index])}</title>" if axis.shown[index] != full[index] else ""
        place = f'transform="rotate(-45 {x} {_coordinate(y)})" ' if axis.rotated else ""
        texts.append(f'<text {place}x="{x}" y="{_coordinate(y)}">{label}{tooltip}</text>')
    return f'<g class="{"rot" if axis.rotated else "mid"}">{"".join(texts)}</g>'


def _y_axis(ticks: Sequence[float], scale: Callable[[float], float], left: float, right: float, suffix: str) -> str:
    grid = "".join(f"M{_coordinate(left)} {_coordinate(scale(t))}H{_coordinate(right)}" for t in ticks)
    labels = "".join(
        f'<text x="{_coordinate(left - 6)}" y="{_coordinate(scale(t) + 4)}">{_tick_text(t)}{suffix}</text>'
        for t in ticks
    )
    return f'<path class="grid" d="{grid}"/><g class="yt">{labels}</g>'


def _legend(entries: Sequence[tuple[str, str]], x: float, y: float) -> str:
    """Swatches left to right from (x, y): each entry is (swatch markup at 0,0, escaped label)."""
    parts = []
    for swatch, label in entries:
        parts.append(
            f'<g transform="translate({_coordinate(x)} {_coordinate(y)})">{swatch}<text x="18" y="9">{label}</text></g>'
        )
        x += 30 + len(label) * _CHAR_PX
    return "".join(parts)


def _bars(column: _Column) -> str:
    top, right_margin = 34.0, 16.0
    left, slot, axis = _fit_slots(column.buckets, right_margin)
    baseline = top + _PLOT_HEIGHT
    height = baseline + axis.depth
    ticks = _ticks(0.0, max([*column.expected, *column.observed, 0.0]) * 100)
    ceiling = ticks[-1]

    def scale(percent: float) -> float:
        return baseline - percent / ceiling * _PLOT_HEIGHT

    bar = min(slot * 0.4, _BAR_MAX_WIDTH)
    series = []
    for offset, shares in ((-bar, column.expected), (0.0, column.observed)):
        path = "".join(
            f"M{_coordinate(left + slot * (i + 0.5) + offset)} {_coordinate(baseline)}"
            f"V{_coordinate(scale(share * 100))}h{_coordinate(bar)}V{_coordinate(baseline)}z"
            for i, share in enumerate(shares)
            if share > 0
        )
        series.append(path)
    hits = "".join(
        f'<rect x="{_coordinate(left + slot * i)}" y="{_coordinate(top)}" width="{_coordinate(slot)}" '
        f'height="{_PLOT_HEIGHT}"><title>{escape(label)}: training {_percent(before)}, now {_percent(after)}</title>'
        "</rect>"
        for i, (label, before, after) in enumerate(zip(column.buckets, column.expected, column.observed, strict=True))
    )
    legend = _legend(
        [
            ('<rect class="b0" width="12" height="12"/>', "baseline (training)"),
            ('<rect class="b1" width="12" height="12"/>', "current window"),
        ],
        left,
        8,
    )
    return (
        f'<svg viewBox="0 0 {_CHART_WIDTH} {_coordinate(height)}" role="img" '
        f'aria-label="{escape(column.name)}: share of rows per bucket, baseline and current window">'
        f"{_y_axis(ticks, scale, left, _CHART_WIDTH - right_margin, '%')}"
        f'<path class="b0" d="{series[0]}"/><path class="b1" d="{series[1]}"/>'
        f'<path class="axis" d="M{_coordinate(left)} {_coordinate(baseline)}H{_CHART_WIDTH - right_margin}"/>'
        f"{_x_axis(axis, column.buckets, left, slot, baseline)}"
        f'<g class="hit">{hits}</g>{legend}</svg>'
    )


def _why(column: _Column, thresholds: Mapping[str, Any], tested: int) -> str:
    """Which part of the rule a drifted column broke."""
    reasons = []
    psi_limit = _as_float(thresholds.get("psi"))
    if column.psi is not None and psi_limit is not None and column.psi > psi_limit:
        reasons.append(f"PSI {_fixed(column.psi)} exceeds {_text(thresholds.get('psi'))}")
    p_limit, min_effect = _as_float(thresholds.get("p_value")), _as_float(thresholds.get("min_effect"))
    p_value, effect = column.p_value, column.effect
    if p_value is not None and effect is not None and p_limit is not None and min_effect is not None and tested > 0:
        corrected = p_limit / tested
        if p_value < corrected and effect >= min_effect:
            reasons.append(
                f"p-value {_p_value(p_value)} is under {corrected:.2g} with effect {_fixed(effect)} "
                f"at least {_text(thresholds.get('min_effect'))}"
            )
    return f'<p class="why">Drifted: {escape("; ".join(reasons))}.</p>' if reasons else ""


def _distribution(column: _Column, thresholds: Mapping[str, Any], tested: int) -> str:
    test = _TEST_NAMES.get(column.test, column.test)
    stats = (
        f"PSI <b>{_fixed(column.psi)}</b> · {escape(test)} statistic {_fixed(column.statistic)} · "
        f"p-value {escape(_p_value(column.p_value))} · effect {_fixed(column.effect)} · "
        f"{len(column.buckets)} buckets"
    )
    flag = ' <span class="flag">drifted</span>' if column.drifted else ""
    plot = _bars(column) if column.buckets else "<p>No buckets were recorded for this column.</p>"
    return (
        f'<section class="card column{" drifted" if column.drifted else ""}" id="{column.anchor}">'
        f'<h3>{_display_name(column)} <span class="tag">{escape(column.kind)}</span>{flag}</h3>'
        f'<p class="stats">{stats}</p>'
        f"{_why(column, thresholds, tested) if column.drifted else ''}"
        f"{plot}</section>"
    )


def _distributions(document: Mapping[str, Any], columns: Sequence[_Column]) -> str:
    if not columns:
        return ""
    thresholds = _mapping(document.get("thresholds"))
    sections = "".join(_distribution(c, thresholds, len(columns)) for c in _by_urgency(columns))
    return (
        '<section id="distributions"><h2>Distributions</h2>'
        "<p>Share of rows per bucket in the training data (baseline) and in this window (current), most drifted "
        "first. Hover a bucket for its exact shares.</p>"
        f"{sections}</section>"
    )


@dataclass(frozen=True)
class _Point:
    version: str
    window: str
    labels: int | None
    value: float


def _points(windows: Any) -> list[_Point]:
    points = []
    for entry in _list(windows):
        value = _as_float(entry.get("value")) if isinstance(entry, Mapping) else None
        if value is None or not math.isfinite(value):
            continue
        points.append(
            _Point(
                _text(entry.get("version"), "?"), _text(entry.get("window"), "?"), _as_int(entry.get("labels")), value
            )
        )
    return points


def _higher_is_better(performance: Mapping[str, Any]) -> bool:
    flag = performance.get("higher_is_better")
    if isinstance(flag, bool):
        return flag
    return performance.get("metric") not in _ERROR_METRICS


def _limit(performance: Mapping[str, Any]) -> float | None:
    holdout, tolerance = _as_float(performance.get("holdout")), _as_float(performance.get("tolerance"))
    if holdout is None or tolerance is None:
        return None
    return holdout * (1 - tolerance) if _higher_is_better(performance) else holdout * (1 + tolerance)


def _version_order(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (10**9, version)


def _line_chart(performance: Mapping[str, Any], points: Sequence[_Point]) -> str:
    metric = _text(performance.get("metric"), "metric")
    holdout, limit = _as_float(performance.get("holdout")), _limit(performance)
    windows = sorted({p.window for p in points})
    versions = sorted({p.version for p in points}, key=_version_order)
    top, right_margin = 34.0, 110.0
    left, slot, axis = _fit_slots(windows, right_margin)
    baseline = top + _PLOT_HEIGHT
    values = [p.value for p in points] + [v for v in (holdout, limit) if v is not None and math.isfinite(v)]
    spread = (max(values) - min(values)) or abs(max(values)) or 1.0
    ticks = _ticks(min(values) - spread * 0.1, max(values) + spread * 0.1)

    def scale(value: float) -> float:
        return baseline - (value - ticks[0]) / (ticks[-1] - ticks[0]) * _PLOT_HEIGHT

    def x_of(window: str) -> float:
        return left + slot * (windows.index(window) + 0.5)

    plot_right = _CHART_WIDTH - right_margin
    parts = [_y_axis(ticks, scale, left, plot_right, "")]
    parts.append(f'<path class="axis" d="M{_coordinate(left)} {_coordinate(baseline)}H{_coordinate(plot_right)}"/>')
    parts.append(_reference_lines(holdout, limit, scale, left, plot_right, performance))
    for index, version in enumerate(versions):
        own = sorted((p for p in points if p.version == version), key=lambda p: p.window)
        colour = f"v{index % _VERSION_COLOURS}"
        line = "L".join(f"{_coordinate(x_of(p.window))} {_coordinate(scale(p.value))}" for p in own)
        parts.append(f'<path class="line {colour}" d="M{line}"/>')
        parts.append(
            f'<g class="{colour}">'
            + "".join(
                f'<circle cx="{_coordinate(x_of(p.window))}" cy="{_coordinate(scale(p.value))}" r="3">'
                f"<title>v{escape(p.version)}, {escape(p.window)}: {escape(metric)} {_metric(p.value)} "
                f"on {_count(p.labels)} labels</title></circle>"
                for p in own
            )
            + "</g>"
        )
    parts.append(_x_axis(axis, windows, left, slot, baseline))
    legend = [
        (f'<path class="line v{i % _VERSION_COLOURS}" d="M0 6h12"/>', f"v{escape(v)}") for i, v in enumerate(versions)
    ]
    if holdout is not None:
        legend.append(('<path class="ref holdout" d="M0 6h14"/>', "holdout"))
    if limit is not None:
        legend.append(('<path class="ref limit" d="M0 6h14"/>', "tolerance limit"))
    parts.append(_legend(legend, left, 8))
    height = baseline + axis.depth
    return (
        f'<svg viewBox="0 0 {_CHART_WIDTH} {_coordinate(height)}" role="img" '
        f'aria-label="{escape(metric)} per labelled window and model version">{"".join(parts)}</svg>'
    )


def _reference_lines(
    holdout: float | None,
    limit: float | None,
    scale: Callable[[float], float],
    left: float,
    right: float,
    performance: Mapping[str, Any],
) -> str:
    """The holdout score dashed and the tolerance limit dotted, each labelled right of the plot, labels kept apart."""
    lines = [
        (v, css, name) for v, css, name in ((holdout, "holdout", "holdout"), (limit, "limit", "limit")) if v is not None
    ]
    parts = []
    label_ys: list[float] = []
    for value, css, name in lines:
        y = scale(value)
        label_y = y + 4
        if label_ys and abs(label_y - label_ys[0]) < 13:
            # The limit sits below the holdout when higher is better, above it otherwise; its label goes the same way.
            below = _higher_is_better(performance)
            label_y = label_ys[0] + (13 if below else -13)
        label_ys.append(label_y)
        parts.append(f'<path class="ref {css}" d="M{_coordinate(left)} {_coordinate(y)}H{_coordinate(right)}"/>')
        parts.append(
            f'<text class="{"limitlabel" if css == "limit" else "reflabel"}" x="{_coordinate(right + 6)}" '
            f'y="{_coordinate(label_y)}">{name} {_metric(value)}</text>'
        )
    return "".join(parts)


def _latest(performance: Mapping[str, Any], points: Sequence[_Point]) -> _Point:
    """The window the check judged: the document's `latest`, or else the newest window of the newest version."""
    recorded = _points([performance.get("latest")])
    return recorded[0] if recorded else max(points, key=lambda p: (p.window, _version_order(p.version)))


def _latest_table(performance: Mapping[str, Any], point: _Point) -> str:
    holdout, limit = _as_float(performance.get("holdout")), _limit(performance)
    change = _MISSING
    if holdout:
        change = f"{(point.value - holdout) / abs(holdout) * 100:+.1f}%"
    cells = [
        ("Version", f"v{escape(point.version)}"),
        ("Window", escape(point.window)),
        ("Labels", _count(point.labels)),
        (escape(_text(performance.get("metric"), "value")), _metric(point.value)),
        ("Holdout", _MISSING if holdout is None else _metric(holdout)),
        ("Change", change),
        ("Tolerance limit", _MISSING if limit is None else _metric(limit)),
    ]
    heads = "".join(f"<th>{head}</th>" for head, _ in cells)
    values = "".join(f"<td>{value}</td>" for _, value in cells)
    return (
        '<h3 class="sub">Latest window</h3><div class="scroll"><table>'
        f"<thead><tr>{heads}</tr></thead><tbody><tr>{values}</tr></tbody></table></div>"
    )


def _performance(document: Mapping[str, Any]) -> str:
    performance = document.get("performance")
    points = _points(performance.get("windows")) if isinstance(performance, Mapping) else []
    if not isinstance(performance, Mapping) or not points:
        model = escape(_text(document.get("model"), "<model>"))
        body = (
            "<p>No labels have arrived yet, so live performance is unknown. To measure it, upload the true outcomes "
            f"to <code>s3://&lt;data-bucket&gt;/labels/{model}/&lt;file&gt;.csv</code> with columns "
            "<code>request_id</code>, <code>index</code> and the target.</p>"
        )
        return f'<section id="performance"><h2>Live performance</h2><div class="card">{body}</div></section>'
    metric = escape(_text(performance.get("metric"), "metric"))
    higher = _higher_is_better(performance)
    tolerance = _as_float(performance.get("tolerance"))
    limit = ""
    if tolerance is not None and math.isfinite(tolerance):
        limit = f", {tolerance * 100:g}% {'below' if higher else 'above'} it"
    intro = (
        f"<p><b>{metric}</b> ({'higher' if higher else 'lower'} is better) on labelled traffic, per window and model "
        f"version, against the holdout score (dashed) and the tolerance limit (dotted){limit}.</p>"
    )
    latest = _latest(performance, points)
    dropped = ""
    if performance.get("dropped"):
        limit_value = _limit(performance)
        past = "" if limit_value is None else f" past the tolerance limit {_metric(limit_value)}"
        dropped = (
            f'<p class="note bad"><b>Performance dropped</b>: {metric} {_metric(latest.value)} on '
            f"{escape(latest.window)} (v{escape(latest.version)}){past}.</p>"
        )
    return (
        '<section id="performance"><h2>Live performance</h2><div class="card">'
        f"{intro}{dropped}{_line_chart(performance, points)}{_latest_table(performance, latest)}</div></section>"
    )


def render_report(document: Mapping[str, Any]) -> str:
    """One self-contained HTML page for a drift check's result document (see the module docstring).

    The page has no external references and no script, embeds only the document's summary numbers, and escapes
    every string taken from the document. Documents without columns (no champion, too few rows) render too, with
    the reason and without plots.
    """
    columns = _columns(document)
    model = _text(document.get("model"))
    status = _text(document.get("status"), "unknown")
    title = f"{model} v{_text(document.get('version'))} · {status} · {_moment(document.get('checked_at'))}"
    stored = document.get("report")
    footer = "Generated by LoopML from the drift check's summary; the page holds no data rows." + (
        f" Stored at <code>{escape(str(stored))}</code>." if stored else ""
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Drift report: {escape(title)}</title><style>{_STYLE}</style></head><body><main>"
        f"{_header(document, columns)}{_summary(columns)}{_performance(document)}{_distributions(document, columns)}"
        f"<footer>{footer}</footer></main></body></html>\n"
    )


def report_key(model: str, checked_at: datetime) -> str:
    """Where a check's page goes: `reports/<model>/<YYYY-MM-DDTHH-MM-SSZ>.html`, in UTC so keys sort by time.

    A naive `checked_at` is taken to be UTC already.
    """
    if not model or "/" in model:
        raise ValueError(f"not a model name: {model!r}")
    moment = checked_at.replace(tzinfo=UTC) if checked_at.tzinfo is None else checked_at.astimezone(UTC)
    return f"reports/{model}/{moment:%Y-%m-%dT%H-%M-%SZ}.html"
