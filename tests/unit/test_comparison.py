"""Champion against challenger: intervals checked against scipy and scikit-learn computed on the rows, coverage
checked by simulation, and the verdict with its estimate of the labels still needed."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import f1_score

from loopml_core.comparison import (
    CHALLENGER_BETTER,
    CHAMPION_BETTER,
    UNDECIDED,
    compare,
    counts_since,
    macro_f1,
    newcombe,
    wilson,
)
from loopml_core.performance import PerformanceCounts, classification_counts, regression_counts

CLASSES = ("no", "yes")


def labelled(truth: np.ndarray, predicted: np.ndarray, classes=CLASSES) -> PerformanceCounts:
    """Counts of labelled predictions, with probabilities that rank the predicted class first."""
    k = len(classes)
    probabilities = np.full((truth.size, k), 0.2 / max(k - 1, 1))
    probabilities[np.arange(truth.size), predicted] = 0.8
    return classification_counts(classes, truth.astype(np.int64), predicted.astype(np.int64), probabilities)


def with_accuracy(n: int, correct: int, classes=CLASSES) -> PerformanceCounts:
    truth = np.arange(n) % len(classes)
    predicted = truth.copy()
    predicted[correct:] = (truth[correct:] + 1) % len(classes)
    return labelled(truth, predicted, classes)


@pytest.mark.parametrize(("successes", "n"), [(0, 10), (3, 10), (81, 100), (999, 1000), (500, 1000), (7, 7)])
def test_wilson_matches_scipy(successes, n):
    reference = stats.binomtest(successes, n).proportion_ci(confidence_level=0.95, method="wilson")
    low, high = wilson(successes, n, 0.95)
    assert low == pytest.approx(reference.low, abs=1e-12) and high == pytest.approx(reference.high, abs=1e-12)


def test_newcombe_reproduces_the_published_example():
    # Newcombe (1998), Statistics in Medicine 17:873-890, table II, example (a): 56/70 against 48/80, method 10.
    difference, low, high = newcombe(48, 80, 56, 70, 0.95)
    assert difference == pytest.approx(0.2)
    assert (round(low, 4), round(high, 4)) == (0.0524, 0.3339)


def test_newcombe_agrees_with_the_wilson_intervals_it_is_built_from():
    """Built by hand from scipy's Wilson intervals, for a pair the paper does not list."""
    a, b = (
        stats.binomtest(412, 500).proportion_ci(method="wilson"),
        stats.binomtest(170, 190).proportion_ci(method="wilson"),
    )
    p_a, p_b = 412 / 500, 170 / 190
    expected_low = p_b - p_a - math.sqrt((p_b - b.low) ** 2 + (a.high - p_a) ** 2)
    expected_high = p_b - p_a + math.sqrt((b.high - p_b) ** 2 + (p_a - a.low) ** 2)
    _, low, high = newcombe(412, 500, 170, 190)
    assert (low, high) == pytest.approx((expected_low, expected_high), abs=1e-12)


def test_macro_f1_of_counts_is_scikit_learns_on_the_rows():
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 3, 700)
    predicted = np.where(rng.random(700) < 0.7, truth, rng.integers(0, 3, 700))
    counts = labelled(truth, predicted, ("a", "b", "c"))
    assert float(macro_f1(counts.confusion)) == pytest.approx(f1_score(truth, predicted, average="macro"))


def test_the_f1_interval_is_the_row_bootstrap():
    """Resampling the confusion counts must give the interval that resampling the rows gives."""
    rng = np.random.default_rng(5)
    truth = rng.integers(0, 2, 600)
    predicted = np.where(rng.random(600) < 0.8, truth, 1 - truth)
    counts = labelled(truth, predicted)
    result = compare(
        champion_version=1,
        champion_counts=counts,
        challenger_version=2,
        challenger_counts=counts,
        metric="f1_macro",
    )
    rows = rng.integers(0, 600, size=(4000, 600))  # 4000 resamples of the rows themselves
    cells = (truth[rows] * 2 + predicted[rows]) + 4 * np.arange(4000)[:, None]
    confusions = np.bincount(cells.ravel(), minlength=4 * 4000).reshape(4000, 2, 2)
    true_positives = np.diagonal(confusions, axis1=1, axis2=2)
    per_class = 2 * true_positives / (confusions.sum(axis=2) + confusions.sum(axis=1))
    low, high = np.quantile(per_class.mean(axis=1), [0.025, 0.975])
    estimate = result.champion.metrics["f1_macro"]
    assert estimate.value == pytest.approx(f1_score(truth, predicted, average="macro"))
    assert estimate.low == pytest.approx(low, abs=0.006) and estimate.high == pytest.approx(high, abs=0.006)


def test_the_f1_interval_covers_the_true_value_at_its_confidence():
    population = np.array([[0.55, 0.1], [0.12, 0.23]])  # the confusion of the whole traffic, as probabilities
    true_f1 = float(macro_f1(population[None] * 1e9)[0])
    rng = np.random.default_rng(11)
    covered = 0
    trials = 300
    for trial in range(trials):
        cells = rng.multinomial(400, population.ravel()).reshape(2, 2)
        truth = np.repeat([0, 0, 1, 1], cells.ravel())
        predicted = np.repeat([0, 1, 0, 1], cells.ravel())
        counts = labelled(truth, predicted)
        estimate = compare(
            champion_version=1,
            champion_counts=counts,
            challenger_version=2,
            challenger_counts=None,
            metric="f1_macro",
            replicates=1000,
            seed=trial,
        ).champion.metrics["f1_macro"]
        covered += estimate.low <= true_f1 <= estimate.high
    assert 0.91 <= covered / trials <= 0.99  # a 95% interval, within the simulation's own error


def test_the_mae_interval_is_the_textbook_normal_interval_on_the_rows():
    rng = np.random.default_rng(7)
    truth = rng.normal(50, 10, 800)
    predicted = truth + rng.standard_t(3, 800) * 4  # heavy tails: MAE's interval assumes nothing about them
    errors = np.abs(predicted - truth)
    half = stats.norm.ppf(0.975) * errors.std(ddof=1) / math.sqrt(errors.size)
    result = compare(
        champion_version=1,
        champion_counts=regression_counts(truth, predicted),
        challenger_version=2,
        challenger_counts=None,
        metric="mae",
    )
    mae = result.champion.metrics["mae"]
    assert (mae.value, mae.low, mae.high) == pytest.approx((errors.mean(), errors.mean() - half, errors.mean() + half))


def test_the_rmse_interval_covers_the_true_value_for_normal_errors():
    rng = np.random.default_rng(13)
    bias, spread = 0.5, 2.0
    true_rmse = math.sqrt(bias**2 + spread**2)
    trials, covered = 500, 0
    for _ in range(trials):
        truth = rng.normal(0, 1, 300)
        counts = regression_counts(truth, truth + rng.normal(bias, spread, 300))
        rmse = compare(
            champion_version=1, champion_counts=counts, challenger_version=2, challenger_counts=None, metric="rmse"
        ).champion.metrics["rmse"]
        covered += rmse.low <= true_rmse <= rmse.high
    assert 0.92 <= covered / trials <= 0.98


def test_a_clearly_better_challenger_wins_and_a_worse_one_loses():
    better = compare(
        champion_version=1,
        champion_counts=with_accuracy(2000, 1600),
        challenger_version=2,
        challenger_counts=with_accuracy(2000, 1800),
        metric="accuracy",
    )
    assert better.verdict == CHALLENGER_BETTER and better.summary == "challenger better"
    assert better.difference.value == pytest.approx(0.1) and better.difference.low > 0
    worse = compare(
        champion_version=1,
        champion_counts=with_accuracy(2000, 1800),
        challenger_version=2,
        challenger_counts=with_accuracy(2000, 1600),
        metric="f1_macro",
    )
    assert worse.verdict == CHAMPION_BETTER and worse.difference.high < 0


def test_for_errors_lower_is_better():
    rng = np.random.default_rng(17)
    truth = rng.normal(0, 1, 3000)
    champion = regression_counts(truth, truth + rng.normal(0, 2.0, 3000))
    challenger = regression_counts(truth, truth + rng.normal(0, 1.5, 3000))
    for metric in ("rmse", "mae"):
        result = compare(
            champion_version=1,
            champion_counts=champion,
            challenger_version=2,
            challenger_counts=challenger,
            metric=metric,
        )
        assert result.verdict == CHALLENGER_BETTER and result.difference.high < 0 and not result.higher_is_better


def test_undecided_says_how_many_more_labels_and_that_many_decide():
    champion, challenger = with_accuracy(600, 480), with_accuracy(400, 336)  # 0.80 against 0.84
    result = compare(
        champion_version=1,
        champion_counts=champion,
        challenger_version=2,
        challenger_counts=challenger,
        metric="accuracy",
    )
    assert result.verdict == UNDECIDED and result.difference.low < 0 < result.difference.high
    assert result.more_labels > 0 and f"need ~{result.more_labels:,} more labels" in result.summary
    # The same rates on the labels it asked for (arriving in the same 60/40 proportion, and a margin) do separate.
    scale = (1000 + result.more_labels) * 1.15 / 1000
    n_champion, n_challenger = round(600 * scale), round(400 * scale)
    later = compare(
        champion_version=1,
        champion_counts=with_accuracy(n_champion, round(0.80 * n_champion)),
        challenger_version=2,
        challenger_counts=with_accuracy(n_challenger, round(0.84 * n_challenger)),
        metric="accuracy",
    )
    assert later.verdict == CHALLENGER_BETTER
    # And with clearly fewer, it still cannot tell.
    scale = (1000 + result.more_labels) * 0.7 / 1000
    n_champion, n_challenger = round(600 * scale), round(400 * scale)
    sooner = compare(
        champion_version=1,
        champion_counts=with_accuracy(n_champion, round(0.80 * n_champion)),
        challenger_version=2,
        challenger_counts=with_accuracy(n_challenger, round(0.84 * n_challenger)),
        metric="accuracy",
    )
    assert sooner.verdict == UNDECIDED


def test_a_variant_without_labels_waits_for_them():
    result = compare(
        champion_version=1,
        champion_counts=with_accuracy(500, 400),
        challenger_version=2,
        challenger_counts=None,
        metric="f1_macro",
        min_labels=100,
    )
    assert result.verdict == UNDECIDED and result.difference is None and result.more_labels == 100
    assert result.challenger.labels == 0 and result.challenger.metrics == {}


def test_a_separation_on_too_few_labels_is_not_a_verdict():
    result = compare(
        champion_version=1,
        champion_counts=with_accuracy(1000, 500),
        challenger_version=2,
        challenger_counts=with_accuracy(50, 50),  # a perfect challenger, on 50 labels
        metric="accuracy",
        min_labels=100,
    )
    assert result.difference.low > 0 and result.verdict == UNDECIDED
    assert result.more_labels == math.ceil((100 / 50 - 1) * 1050)  # the challenger's share has to double


def test_identical_variants_may_never_separate():
    same = with_accuracy(500, 400)
    result = compare(
        champion_version=1, champion_counts=same, challenger_version=2, challenger_counts=same, metric="accuracy"
    )
    assert result.verdict == UNDECIDED and result.more_labels is None and "never" in result.summary


def test_roc_auc_is_judged_with_its_interval_for_two_classes_and_on_f1_beyond():
    binary = compare(
        champion_version=1,
        champion_counts=with_accuracy(1000, 700),
        challenger_version=2,
        challenger_counts=with_accuracy(1000, 900),
        metric="roc_auc",
    )
    assert binary.metric == "roc_auc" and binary.champion.metrics["roc_auc"].low is not None
    assert binary.verdict == CHALLENGER_BETTER
    three = ("a", "b", "c")
    multi = compare(
        champion_version=1,
        champion_counts=with_accuracy(900, 600, three),
        challenger_version=2,
        challenger_counts=with_accuracy(900, 800, three),
        metric="roc_auc",
    )
    assert multi.metric == "f1_macro" and multi.champion.metrics["roc_auc"].low is None
    assert any("f1_macro" in note for note in multi.notes) and multi.verdict == CHALLENGER_BETTER


def test_the_same_counts_always_give_the_same_answer():
    args = {
        "champion_version": 1,
        "champion_counts": with_accuracy(300, 240),
        "challenger_version": 2,
        "challenger_counts": with_accuracy(300, 250),
        "metric": "f1_macro",
    }
    assert compare(**args).to_json() == compare(**args).to_json()


def test_counts_since_merges_the_days_of_the_deployment():
    days = {
        "2026-01-01": regression_counts(np.zeros(2), np.ones(2)),
        "2026-01-02": regression_counts(np.zeros(3), np.ones(3)),
        "2026-01-03": regression_counts(np.zeros(4), np.ones(4)),
    }
    assert counts_since(days, "2026-01-02T10:00:00.000000Z").rows == 7
    assert counts_since(days, "2026-02-01") is None


def test_a_bad_confidence_is_refused():
    with pytest.raises(ValueError, match="confidence"):
        compare(
            champion_version=1,
            champion_counts=None,
            challenger_version=2,
            challenger_counts=None,
            metric="accuracy",
            confidence=1.0,
        )
