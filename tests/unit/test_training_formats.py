"""Training reads a dataset version in its stored format: CSV, gzip-compressed CSV and Parquet give the same frame."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from loopml_core.contract import DatasetContract
from loopml_core.training import TrainingError, read_dataset

ROOT = Path(__file__).resolve().parents[2]
FEATURES = [
    {"name": "age", "type": "int", "min": 0},
    {"name": "visits", "type": "int", "nullable": True},
    {"name": "income", "type": "float", "nullable": True},
    {"name": "plan", "type": "category", "values": ["basic", "pro", "NA"], "nullable": True},
    {"name": "region", "type": "category", "values": ["north", "south"], "nullable": True},
    {"name": "zone", "type": "category", "values": ["1", "2", "3"], "nullable": True},
]


def contract(task: str = "classification", target_values: list[str] | None = None) -> DatasetContract:
    spec: dict[str, object] = {"name": "customers", "task": task, "target": "label", "features": FEATURES}
    if target_values is not None:
        spec["target_values"] = target_values
    return DatasetContract.model_validate(spec)


def customers(n: int, seed: int, task: str = "classification") -> pd.DataFrame:
    """Logically typed data as a Parquet writer keeps it: nullable ints stay ints, categories are dictionaries."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 90, n)
    income = rng.lognormal(10.0, 0.7, n)
    income[::7] = np.nan
    income[3] = 1e300  # the shortest repr round trip is exact at the extremes too
    income[4] = 0.1
    visits = pd.array(rng.integers(0, 40, n), dtype="Int32")
    visits[::11] = pd.NA
    plan = pd.Categorical(rng.choice(["basic", "pro", "NA"], n), categories=["basic", "pro", "NA"])
    plan[::13] = np.nan
    region = pd.Series(rng.choice(["north", "south"], n), dtype=object)
    region[::5] = None
    zone = pd.array(rng.integers(1, 4, n), dtype="Int64")  # an int-typed category: its values are "1", "2", "3"
    zone[::9] = pd.NA
    score = 0.05 * (age - 50) + np.log(np.nan_to_num(income, nan=22000.0)) - 10 + (np.asarray(plan) == "pro")
    frame = pd.DataFrame({"age": age, "visits": visits, "income": income, "plan": plan, "region": region, "zone": zone})
    if task == "regression":
        frame["label"] = 100.0 + 20.0 * score
    else:
        frame["label"] = (score + rng.normal(0, 0.5, n) > 0).astype(np.int64)  # int-typed labels 0/1
    return frame


def as_csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def as_parquet(frame: pd.DataFrame, writer: str = "pyarrow") -> bytes:
    buffer = io.BytesIO()
    if writer == "pyarrow":
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buffer)
    else:
        import fastparquet

        fastparquet.write(buffer, frame, write_index=False, open_with=lambda *_: _Unclosed(buffer))
    return buffer.getvalue()


class _Unclosed(io.BytesIO):
    """fastparquet closes the file it writes; keep the buffer readable afterwards."""

    def __init__(self, target: io.BytesIO) -> None:
        super().__init__()
        self.target = target

    def close(self) -> None:
        self.target.write(self.getvalue())
        super().close()


def test_the_frame_the_tests_compare_has_what_makes_formats_differ() -> None:
    # Given the data every equivalence test below reads
    frame = customers(200, seed=1)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    # Then the Parquet file types it as promised and the CSV writes ints as ints
    assert table.schema.field("visits").type == pa.int32()
    assert table.schema.field("zone").type == pa.int64() and table.column("zone").null_count > 0
    assert pa.types.is_dictionary(table.schema.field("plan").type)
    assert table.schema.field("region").type == pa.string()
    assert table.schema.field("label").type == pa.int64()
    assert "\n1," in as_csv(frame).decode() or ",1\n" in as_csv(frame).decode()
    assert ".0," not in as_csv(frame[["age", "visits", "zone"]]).decode()


@pytest.mark.parametrize("writer", ["pyarrow", "fastparquet"])
@pytest.mark.parametrize("task", ["classification", "regression"])
def test_csv_gzip_csv_and_parquet_read_to_the_same_frame(writer: str, task: str) -> None:
    # Given the same data as CSV, gzip-compressed CSV and Parquet
    c = contract(task)
    frame = customers(300, seed=2, task=task)
    csv = as_csv(frame)
    # When training reads each in its format
    from_csv = read_dataset(c, csv, "csv")
    from_gzip = read_dataset(c, gzip.compress(csv), "csv.gz")
    from_parquet = read_dataset(c, as_parquet(frame, writer), "parquet")
    # Then the frames are identical, value for value, nulls included
    pd.testing.assert_frame_equal(from_gzip, from_csv, check_exact=True)
    pd.testing.assert_frame_equal(from_parquet, from_csv, check_exact=True)
    assert from_csv["visits"].isna().sum() == frame["visits"].isna().sum() > 0
    assert from_csv["income"].isna().sum() == frame["income"].isna().sum() > 0
    assert from_csv.loc[3, "income"] == 1e300 and from_csv.loc[4, "income"] == 0.1


def test_parquet_columns_are_typed_as_their_csv_text() -> None:
    c = contract(target_values=["0", "1"])
    frame = customers(200, seed=3)
    read = read_dataset(c, as_parquet(frame), "parquet")
    assert list(read.columns) == ["age", "visits", "income", "plan", "region", "zone", "label"]
    # Numbers of any width are float64 with NaN for nulls
    assert all(read[name].dtype == np.float64 for name in ("age", "visits", "income"))
    assert read.loc[0, "age"] == float(frame.loc[0, "age"])
    # Categories are Python strings with None for nulls, from dictionaries, strings and ints alike
    for name in ("plan", "region", "zone"):
        assert read[name].dtype == object
        assert {type(v) for v in read[name]} == {str, type(None)}
    assert read.loc[0, "zone"] is None and set(read["zone"].dropna()) == {"1", "2", "3"}  # never "1.0"
    assert "NA" in set(read["plan"])  # a category named NA is a value, not a null
    assert read.loc[0, "plan"] is None and read.loc[0, "region"] is None
    # An int-typed classification target gives the contract's string labels
    assert set(read["label"]) == {"0", "1"}


def test_int_labels_with_nulls_read_as_ints_not_floats() -> None:
    # Given an int-typed label column with a null (Parquet readers often widen such a column to float)
    c = contract()
    frame = customers(40, seed=4)
    frame["label"] = pd.array([1, None, *[0] * 38], dtype="Int64")
    read = read_dataset(c, as_parquet(frame), "parquet")
    assert read["label"].tolist()[:3] == ["1", None, "0"]
    assert read_dataset(c, as_csv(frame), "csv")["label"].tolist()[:3] == ["1", None, "0"]


def test_parquet_edge_values_read_as_a_csv_of_them_would() -> None:
    c = contract()
    frame = customers(30, seed=5)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    # An empty string is an empty CSV cell: a null
    table = table.set_column(
        table.schema.get_field_index("region"), "region", pa.array(["", *frame["region"][1:]], pa.string())
    )
    # A float32 value reads as its shortest decimal form, as a CSV of it says 0.1, not 0.10000000149011612
    income = pa.array(np.full(30, 0.1, dtype=np.float32))
    table = table.set_column(table.schema.get_field_index("income"), "income", income)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    read = read_dataset(c, buffer.getvalue(), "parquet")
    assert read.loc[0, "region"] is None
    assert read["income"].tolist() == [0.1] * 30


def test_contract_columns_are_picked_by_name_in_any_order_and_extra_ones_ignored() -> None:
    c = contract()
    frame = customers(50, seed=6)
    shuffled = frame[["label", "zone", "region", "plan", "income", "visits", "age"]].assign(extra="x")
    expected = read_dataset(c, as_csv(frame), "csv")
    pd.testing.assert_frame_equal(read_dataset(c, as_parquet(shuffled), "parquet"), expected, check_exact=True)
    pd.testing.assert_frame_equal(read_dataset(c, gzip.compress(as_csv(shuffled)), "csv.gz"), expected)


def test_unreadable_datasets_are_refused_with_a_reason() -> None:
    c = contract()
    frame = customers(50, seed=7)
    with pytest.raises(TrainingError, match="lacks contract columns: plan"):
        read_dataset(c, as_parquet(frame.drop(columns=["plan"])), "parquet")
    with pytest.raises(TrainingError, match="cannot read the dataset Parquet file"):
        read_dataset(c, as_csv(frame), "parquet")
    with pytest.raises(TrainingError, match="cannot decompress"):
        read_dataset(c, as_csv(frame), "csv.gz")
    with pytest.raises(TrainingError, match="cannot decompress"):
        read_dataset(c, gzip.compress(as_csv(frame))[:-40], "csv.gz")
    with pytest.raises(TrainingError, match="unsupported dataset format 'xlsx'"):
        read_dataset(c, as_csv(frame), "xlsx")
    with pytest.raises(TrainingError, match="'age' has values that are not numbers"):
        read_dataset(c, as_parquet(frame.assign(age=frame["age"] > 50)), "parquet")
    with pytest.raises(TrainingError, match="'age' has values that are not numbers"):
        read_dataset(c, as_parquet(frame.assign(age="old")), "parquet")


def test_numbers_stored_as_parquet_text_parse_as_csv_text_does() -> None:
    c = contract()
    frame = customers(50, seed=8)
    as_text = frame.assign(income=[None if np.isnan(v) else repr(float(v)) for v in frame["income"]])
    as_text.loc[1, "income"] = ""
    read = read_dataset(c, as_parquet(as_text), "parquet")
    expected = read_dataset(c, as_csv(as_text), "csv")
    pd.testing.assert_frame_equal(read, expected, check_exact=True)
    assert np.isnan(read.loc[1, "income"])


NO_PYARROW = textwrap.dedent(
    """
    import importlib.abc, json, sys

    attempts = []

    class NoPyarrow(importlib.abc.MetaPathFinder):
        # The training layer has no pyarrow: any import of it fails, as it would there, and is recorded. (Setting
        # sys.modules["pyarrow"] = None would also fail imports, but scikit-learn looks pyarrow up in sys.modules to
        # recognise Arrow inputs and would then crash on None; without pyarrow installed it finds nothing there.)
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "pyarrow":
                attempts.append(name)
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NoPyarrow())
    import fastparquet  # like pandas, it probes for pyarrow once, at import, and goes on without it
    import pandas as pd
    from loopml_core.contract import DatasetContract
    from loopml_core.training import read_dataset, train

    at_import = len(attempts)
    contract = DatasetContract.model_validate(json.loads(sys.argv[1]))
    paths = json.loads(sys.argv[2])
    frames = {fmt: read_dataset(contract, open(path, "rb").read(), fmt) for fmt, path in paths.items()}
    result = train(contract, frames["parquet"])
    pd.testing.assert_frame_equal(frames["parquet"], frames["csv.gz"], check_exact=True)
    print(json.dumps({
        "attempts_at_import": attempts[:at_import],
        "attempts_after_import": attempts[at_import:],
        "pyarrow_loaded": sorted(m for m in sys.modules if m.split(".")[0] == "pyarrow"),
        "rows": len(frames["parquet"]),
        "train_rows": result.train_rows,
        "pandas_string_storage": str(pd.Series(["x"]).dtype.storage),
    }))
    """
)


def test_the_training_path_reads_parquet_without_pyarrow(tmp_path: Path) -> None:
    # Given a Parquet dataset (written with pyarrow, as most are) and the same data gzip-compressed
    c = contract()
    frame = customers(300, seed=9)
    parquet, gz = tmp_path / "data.parquet", tmp_path / "data.csv.gz"
    parquet.write_bytes(as_parquet(frame))
    gz.write_bytes(gzip.compress(as_csv(frame)))
    # When a process in which pyarrow cannot be imported reads both and trains on the Parquet one
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            NO_PYARROW,
            c.model_dump_json(),
            json.dumps({"parquet": str(parquet), "csv.gz": str(gz)}),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(ROOT / "layers" / "core"), "PATH": "/usr/bin:/bin", "PYTHONWARNINGS": "ignore"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    # Then reading and training never tried pyarrow (only the libraries' optional probes at import did, and went on
    # without it), none of it is loaded, and pandas ran with Python strings, as on the training layer
    assert report["attempts_at_import"] and set(report["attempts_at_import"]) == {"pyarrow"}
    assert report["attempts_after_import"] == []
    assert report["pyarrow_loaded"] == []
    assert report["pandas_string_storage"] == "python"
    assert report["rows"] == 300 and report["train_rows"] == 240
