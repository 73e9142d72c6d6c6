"""The drift report page: well-formed, self-contained, small, escaped, and showing the numbers that matter."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone
from html.parser import HTMLParser
from typing import Any

import pytest

from loopml_core.drift_report import render_report, report_key

HOSTILE = "<script>alert(1)</script>"
VOID_ELEMENTS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


def column(
    psi: float = 0.01,
    p_value: float = 0.5,
    drifted: bool = False,
    kind: str = "numeric",
    buckets: list[str] | None = None,
) -> dict[str, Any]:
    labels = buckets or ["(-inf, 1.5]", "(1.5, 3]", "(3, inf]", "(null)"]
    share = 1 / len(labels)
    return {
        "kind": kind,
        "psi": psi,
        "test": "ks" if kind == "numeric" else "chi2",
        "statistic": 0.04,
        "p_value": p_value,
        "effect": 0.04,
        "drifted": drifted,
        "buckets": labels,
        "expected": [share] * len(labels),
        "observed": [share * (0.5 if i % 2 else 1.5) for i in range(len(labels))],
    }


def performance(windows: int = 3, metric: str = "f1_macro", higher_is_better: bool = True) -> dict[str, Any]:
    first = date(2026, 6, 1)
    entries = [
        {
            "version": 2 if i < windows // 2 else 3,
            "window": (first + timedelta(days=i)).isoformat(),
            "labels": 500,
            "value": 0.8 - (i % 10) * 0.01,
        }
        for i in range(windows)
    ]
    return {
        "metric": metric,
        "higher_is_better": higher_is_better,
        "holdout": 0.81,
        "tolerance": 0.1,
        "windows": entries,
        "latest": entries[-1] if entries else None,
        "dropped": False,
    }


def document(
    features: dict[str, dict[str, Any]] | None = None,
    prediction: dict[str, Any] | None = None,
    perf: dict[str, Any] | None = None,
    status: str = "ok",
    **overrides: Any,
) -> dict[str, Any]:
    features = (
        {"age": column(), "plan": column(kind="category", buckets=["basic", "pro"])} if features is None else features
    )
    drifted = [name for name, entry in features.items() if entry["drifted"]]
    return {
        "model": "churn",
        "version": 3,
        "status": status,
        "checked_at": "2026-11-24T10:00:00+00:00",
        "window": {"start": "2026-11-24T08:00:00+00:00", "end": "2026-11-24T10:00:00+00:00", "objects": 12},
        "rows": 12345,
        "min_rows": 500,
        "thresholds": {"psi": 0.2, "p_value": 0.01, "min_effect": 0.1},
        "features": features,
        "prediction": prediction,
        "drifted": drifted,
        "performance": perf,
        "retraining": None,
        "report": "s3://artifacts/reports/churn/2026-11-24T10-00-00Z.html",
    } | overrides


class TagBalance(HTMLParser):
    """Fails on the first end tag that does not close the innermost open element."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.attributes: list[tuple[str, str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.attributes += [(tag, name, value) for name, value in attrs]
        if tag not in VOID_ELEMENTS:
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.attributes += [(tag, name, value) for name, value in attrs]

    def handle_endtag(self, tag: str) -> None:
        assert self.open, f"</{tag}> closes nothing"
        innermost = self.open.pop()
        assert innermost == tag, f"</{tag}> closes <{innermost}>"


def parse(page: str) -> TagBalance:
    parser = TagBalance()
    parser.feed(page)
    parser.close()
    assert parser.open == [], f"never closed: {parser.open}"
    return parser


def summary_rows(page: str) -> list[tuple[str, str, list[str]]]:
    """(row class, column name, cell texts) of the summary table, top to bottom."""
    table = page.split('<section id="summary">', 1)[1].split("</section>", 1)[0]
    rows = []
    for row_class, cells in re.findall(r'<tr class="(\w+)">(.*?)</tr>', table):
        texts = [re.sub(r"<[^>]+>", "", cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", cells)]
        rows.append((row_class, texts[0].split(" model output")[0], texts))
    return rows


def large_document() -> dict[str, Any]:
    buckets = [f"({i * 1.25:.4g}, {(i + 1) * 1.25:.4g}]" for i in range(99)] + ["(null)"]
    features = {f"feature_{i:02d}_with_a_longish_name": column(0.3, 1e-9, True, buckets=buckets) for i in range(20)}
    return document(features, prediction=column(buckets=buckets), perf=performance(200), status="drift")


def test_page_is_well_formed_html_with_balanced_tags() -> None:
    for doc in (document(prediction=column(), perf=performance()), large_document(), document(features={})):
        parse(render_report(doc))


def test_one_plot_per_column_and_one_for_performance() -> None:
    features = {f"f{i}": column() for i in range(5)}

    assert render_report(document(features)).count("<svg") == 5
    assert render_report(document(features, prediction=column())).count("<svg") == 6
    assert render_report(document(features, prediction=column(), perf=performance())).count("<svg") == 7


@pytest.mark.parametrize("perf", [None, performance(windows=0)])
def test_without_labelled_windows_there_is_no_performance_plot_but_upload_instructions(perf: Any) -> None:
    page = render_report(document(perf=perf))

    assert page.count("<svg") == 2
    assert "No labels have arrived yet" in page
    assert "s3://&lt;data-bucket&gt;/labels/churn/&lt;file&gt;.csv" in page
    assert "request_id" in page
    assert 'class="ref holdout"' not in page


def test_performance_chart_draws_holdout_and_tolerance_limit() -> None:
    page = render_report(document(perf=performance(windows=30)))

    assert 'class="ref holdout"' in page
    assert "holdout 0.810" in page
    assert "limit 0.729" in page  # 0.81 * (1 - 0.1): higher is better
    assert page.count("<circle") == 30
    assert 'class="line v1"' in page  # one line per version: v2 and v3
    assert 'class="line v2"' not in page
    assert "Latest window" in page


def test_tolerance_limit_lies_above_the_holdout_when_lower_is_better() -> None:
    page = render_report(document(perf=performance(metric="rmse", higher_is_better=False)))

    assert "limit 0.891" in page  # 0.81 * (1 + 0.1)
    assert "lower is better" in page


def test_twenty_features_of_a_hundred_buckets_stay_under_a_megabyte() -> None:
    page = render_report(large_document())

    assert len(page.encode()) < 1_000_000
    assert page.count("<svg") == 20 + 1 + 1


def test_page_loads_nothing_from_elsewhere() -> None:
    page = render_report(large_document())
    references = [value for _, name, value in parse(page).attributes if name in {"src", "href", "xlink:href"} and value]

    assert references, "the summary links to the column sections"
    assert all(value.startswith("#") for value in references)
    assert not any(value.startswith(("http://", "https://", "//")) for value in references)
    lowered = page.lower()
    for forbidden in ("<script", "<link", "@import", "url(", "<img", "<iframe"):
        assert forbidden not in lowered


def test_strings_from_the_document_are_escaped() -> None:
    hostile_column = column(0.9, 1e-20, True, kind="category", buckets=[HOSTILE, '"><img src=x onerror=alert(1)>'])
    doc = document(
        {HOSTILE: hostile_column},
        model='churn"><b>bold</b>',
        retraining={"decision": "started", "reason": HOSTILE, "execution": HOSTILE},
        report=HOSTILE,
        status="drift",
    )

    page = render_report(doc)

    parse(page)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script" not in page.lower()
    assert "<img" not in page
    assert "<b>bold</b>" not in page
    assert "churn&quot;&gt;&lt;b&gt;bold&lt;/b&gt;" in page


def test_drifted_columns_come_first_and_are_marked() -> None:
    features = {
        "calm": column(psi=0.15),
        "calmer": column(psi=0.01),
        "shifted": column(psi=0.3, p_value=1e-8, drifted=True),
        "tested": column(psi=0.05, p_value=1e-9, drifted=True),
    }

    rows = summary_rows(render_report(document(features, prediction=column(psi=0.12), status="drift")))

    assert [name for _, name, _ in rows] == ["shifted", "tested", "calm", "prediction", "calmer"]
    assert [row_class for row_class, _, _ in rows] == ["drifted", "drifted", "steady", "steady", "steady"]
    assert [cells[7] for _, _, cells in rows] == ["yes", "yes", "no", "no", "no"]


def test_summary_shows_psi_to_three_decimals_and_small_p_values_in_scientific_notation() -> None:
    features = {
        "amount": column(psi=0.1234, p_value=3.2e-12),
        "term": column(psi=0.02, p_value=0.0),
        "plan": column(psi=0.01, p_value=0.2345, kind="category"),
    }

    cells = {name: texts for _, name, texts in summary_rows(render_report(document(features)))}

    assert cells["amount"][2] == "0.123"
    assert cells["amount"][5] == "3.2e-12"
    assert cells["term"][5] == "&lt; 1e-300"
    assert cells["plan"][5] == "0.234"
    assert cells["plan"][3] == "χ²"


def test_header_states_the_rule_status_and_retraining_decision() -> None:
    doc = document(
        {"age": column(psi=0.5, drifted=True)},
        status="drift",
        retraining={"decision": "started", "reason": "drift in age", "execution": "retrain-42"},
    )

    page = render_report(doc)

    assert 'class="badge bad">drift<' in page
    assert "v3" in page
    assert "2026-11-24 10:00:00 UTC" in page
    assert "12,345" in page
    assert "PSI exceeds 0.2, or its KS/chi² p-value is under 0.01 divided by the number of columns tested" in page
    assert "effect is at least 0.1" in page
    assert "Retraining started" in page
    assert "retrain-42" in page
    assert 'class="badge good">ok<' in render_report(document())


@pytest.mark.parametrize(
    ("status", "explanation"),
    [("insufficient-data", "too noisy to act on"), ("no-champion", "has no champion version")],
)
def test_documents_without_columns_render_the_reason_and_no_plots(status: str, explanation: str) -> None:
    doc = document({}, status=status, rows=120, version=None if status == "no-champion" else 3, thresholds=None)

    page = render_report(doc)

    parse(page)
    assert "<svg" not in page
    assert explanation in page
    assert 'class="badge muted"' in page
    assert '<section id="summary">' not in page


def test_a_document_with_only_a_name_and_status_still_renders() -> None:
    page = render_report({"model": "churn", "status": "no-champion"})

    parse(page)
    assert "has no champion version" in page


def test_long_bucket_labels_are_cut_on_the_axis_with_the_full_text_in_a_tooltip() -> None:
    label = "a very long category value that goes on"
    page = render_report(document({"plan": column(kind="category", buckets=[label, "short"])}))

    assert ">a very long categ…<" in page
    assert f"<title>{label}</title>" in page


def test_report_key_is_utc_sortable_and_has_no_colons() -> None:
    at = datetime(2026, 11, 24, 12, 30, 5, tzinfo=timezone(timedelta(hours=2)))

    assert report_key("churn", at) == "reports/churn/2026-11-24T10-30-05Z.html"
    assert report_key("churn", datetime(2026, 1, 2, 3, 4, 5)) == "reports/churn/2026-01-02T03-04-05Z.html"
    assert report_key("churn", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) < report_key("churn", at)


@pytest.mark.parametrize("model", ["", "a/b"])
def test_report_key_rejects_names_that_are_not_one_path_segment(model: str) -> None:
    with pytest.raises(ValueError, match="not a model name"):
        report_key(model, datetime(2026, 1, 1, tzinfo=UTC))


def test_a_performance_drop_is_called_out_with_the_latest_value_and_the_limit() -> None:
    perf = performance(windows=4) | {"dropped": True}
    perf["latest"] = perf["windows"][-1] | {"value": 0.7}

    page = render_report(document(perf=perf))

    assert "Performance dropped" in page
    assert "f1_macro 0.700" in page
    assert "past the tolerance limit 0.729" in page


def test_the_checks_notes_are_listed_escaped() -> None:
    page = render_report(document(notes=["unreadable capture batch captures/a.jsonl", HOSTILE]))

    assert "<li>unreadable capture batch captures/a.jsonl</li>" in page
    assert "<li>&lt;script&gt;alert(1)&lt;/script&gt;</li>" in page
