"""Times the whole closed loop on the local cloud, stage by stage (the figures `loopml demo` promises).

Run: .venv/bin/python benchmarks/bench_loop.py [--rows 2000]
Baseline in the same run: the demo's own goal, 180 s on 2 cores after install.
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time

from rich.console import Console

GOAL_SECONDS = 180.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=2000, help="rows per uploaded dataset")
    args = parser.parse_args()
    os.environ["LOOPML_HOME"] = tempfile.mkdtemp(prefix="loopml-bench-")
    started = time.perf_counter()
    from infra.cli.demo import run_demo  # imports (pandas, sklearn, onnxruntime, moto) count: a user waits for them

    imported = time.perf_counter() - started
    summary = run_demo(Console(file=io.StringIO()), rows=args.rows)
    total = time.perf_counter() - started
    print(f"{'stage':<80} {'seconds':>8}")
    print(f"{'imports':<80} {imported:8.2f}")
    for stage, seconds in summary["timings"].items():
        print(f"{stage[:80]:<80} {seconds:8.2f}")
    print(f"{'total (imports + loop)':<80} {total:8.2f}")
    verdict = "met" if total <= GOAL_SECONDS else "MISSED"
    print(f"goal {GOAL_SECONDS:.0f}s: {verdict} ({total / GOAL_SECONDS:.1%} of it)")
    print(
        f"v1 accuracy {summary['v1_metrics']['accuracy']:.3f}; on the shifted holdout v1 "
        f"{summary['v1_on_new_holdout']['accuracy']:.3f} vs v2 {summary['v2_metrics']['accuracy']:.3f}"
    )


if __name__ == "__main__":
    main()
