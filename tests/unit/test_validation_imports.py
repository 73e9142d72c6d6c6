"""The validation function's layer has pyarrow and numpy, not pandas: its whole path must run without pandas."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import gzip, importlib.abc, io, sys

    attempted = set()

    class Missing(importlib.abc.MetaPathFinder):
        # What the data layer does not ship: importing it fails, as it would on Lambda.
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"pandas", "sklearn", "scipy", "onnxruntime", "fastparquet"}:
                attempted.add(name.split(".")[0])
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Missing())

    import pyarrow as pa
    import pyarrow.parquet as pq

    from loopml_core.adapters.object_store import InMemoryObjectStore
    from loopml_core.adapters.pipeline import InMemoryPipelineRunner
    from loopml_core.adapters.table import InMemoryTable
    from loopml_core.contract import load_contract
    from loopml_core.logic.ingest import Ingestor, Upload
    from loopml_core.registry import Registry

    contract = load_contract(
        "name: churn\\ntask: classification\\ntarget: y\\ntarget_values: ['no', 'yes']\\n"
        "quality: {min_rows: 10}\\nfeatures:\\n"
        "  - {name: age, type: int, min: 0}\\n  - {name: plan, type: category, values: [a, b]}\\n"
    )
    rows = [(i % 90, "ab"[i % 2], ["no", "yes"][i % 3 == 0]) for i in range(500)]
    text = ("age,plan,y\\n" + "".join(f"{a},{p},{y}\\n" for a, p, y in rows)).encode()
    sink = io.BytesIO()
    columns = {"age": [r[0] for r in rows], "plan": [r[1] for r in rows], "y": [r[2] for r in rows]}
    pq.write_table(pa.table(columns), sink)
    bad = text.replace(b"\\n3,b,", b"\\nx,b,", 1)

    store, registry = InMemoryObjectStore(), Registry(InMemoryTable())
    registry.declare_dataset(contract)
    ingestor = Ingestor(store, registry, InMemoryPipelineRunner("arn:aws:states:us-east-1:1:stateMachine:p"))
    outcomes = []
    attempted.clear()  # pyarrow looks for pandas when it builds the test files; validation must never ask
    uploads = [("a.csv", text), ("b.csv.gz", gzip.compress(text + b"1,a,no\\n")), ("c.parquet", sink.getvalue())]
    for name, body in [*uploads, ("d.csv", bad)]:
        stored = store.put("bucket", f"incoming/churn/{name}", body)
        outcomes.append(str(ingestor.ingest(Upload("bucket", stored.key, stored.version_id)).status))
    print(outcomes, sorted(attempted))
    """
)


def test_the_validation_path_runs_on_pyarrow_and_numpy_alone() -> None:
    # Given an interpreter where pandas, scikit-learn and scipy cannot be imported (the data layer ships none)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT / "layers" / "core"), "PATH": "/usr/bin:/bin"},
        timeout=120,
        check=False,
    )
    # Then CSV, gzip-compressed CSV and Parquet uploads are validated and versioned, a bad one is quarantined, and
    # nothing on the way even tries to import pandas (where it is installed, as beside the CLI, that costs 130 ms)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['accepted', 'accepted', 'accepted', 'quarantined'] []"
