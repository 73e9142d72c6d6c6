"""Synthetic churn data for the demo and the tests: a stable world, and a shifted one (a price rise)."""

from __future__ import annotations

import csv
import io
import math
import random
from typing import Any

FEATURES = ["tenure_months", "monthly_charges", "support_calls", "plan", "region"]
PLAN_PRICE = {"basic": 30.0, "plus": 55.0, "pro": 90.0}


def customers(rows: int, *, seed: int, shifted: bool = False) -> list[dict[str, Any]]:
    """Customer records with a `churned` label.

    In the shifted world prices rose by 40% and newer, chattier customers dominate; price sensitivity now drives
    churn, so a model trained on the stable world both sees unfamiliar inputs and gets the relationship wrong.
    """
    rng = random.Random(seed)
    records = []
    for _ in range(rows):
        plan = rng.choices(["basic", "plus", "pro"], weights=[5, 3, 2] if not shifted else [2, 3, 5])[0]
        tenure = int(min(600, rng.expovariate(1 / (30 if not shifted else 8))))
        price = PLAN_PRICE[plan] * (1.4 if shifted else 1.0) + rng.gauss(0, 6)
        calls = min(100, int(rng.expovariate(1 / (1.5 if not shifted else 4.0))))
        region = rng.choice(["north", "south", "east", "west"])
        if shifted:
            score = -1.0 + 0.045 * (price - 60) + 0.25 * calls - 0.04 * tenure
        else:
            score = 0.8 - 0.06 * tenure + 0.45 * calls + (0.7 if plan == "basic" else -0.4)
        churned = rng.random() < 1 / (1 + math.exp(-score))
        records.append(
            {
                "tenure_months": tenure,
                "monthly_charges": round(max(0.0, price), 2),
                "support_calls": calls,
                "plan": plan,
                "region": region,
                "churned": "yes" if churned else "no",
            }
        )
    return records


def to_csv(records: list[dict[str, Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(records[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return buffer.getvalue().encode()


def malformed_csv() -> bytes:
    """An upload with several different faults, each of which the validation report must name."""
    good = customers(150, seed=99)
    good[3]["tenure_months"] = "twelve"  # not an integer
    good[10]["monthly_charges"] = -20  # below the contract's minimum
    good[17]["plan"] = "platinum"  # not a declared category
    good[25]["support_calls"] = ""  # a null where none are allowed
    for record in good:
        record.pop("region")  # a declared feature missing altogether
        record["coupon"] = "X"  # a column the contract does not declare
    return to_csv(good)


def requests_for(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Inference payload records: the features only."""
    return [{name: record[name] for name in FEATURES} for record in records]
