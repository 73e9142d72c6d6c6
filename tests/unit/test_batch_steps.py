"""The batch steps (plan, score each chunk, finish) on in-memory adapters: what the output holds, what the report
names, and what is refused or failed. The local cloud runs the same steps under the state machine
(tests/integration/test_batch_local_cloud.py)."""

from __future__ import annotations

import csv
import gzip
import io
import json
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from infra.demo import data
from infra.local.seed import register_model
from loopml_core.adapters.object_store import InMemoryObjectStore
from loopml_core.adapters.object_writer import InMemoryObjectWriters
from loopml_core.adapters.table import InMemoryTable
from loopml_core.batch import layout
from loopml_core.contract import DatasetContract, load_contract
from loopml_core.logic.batch import BatchFinisher, BatchPlanner, ChunkLimits, ChunkScorer
from loopml_core.registry import Registry
from loopml_core.serving import OnnxModel
from loopml_core.training import train

ROOT = Path(__file__).resolve().parents[2]
CHURN = load_contract((ROOT / "infra" / "demo" / "churn.yaml").read_text() + "algorithm: logistic_regression\n")
SPEND = load_contract(
    """
name: spend
task: regression
target: spend
algorithm: linear_regression
features:
  - {name: visits, type: int, min: 0}
  - {name: discount, type: float, nullable: true}
  - {name: plan, type: category, values: [basic, plus, pro]}
"""
)
DATA, ARTIFACTS = "data-bucket", "artifact-bucket"
PREDICTIONS = ["prediction", "probability_no", "probability_yes", "model_version"]


def spend_frame(rows: int, seed: int) -> pd.DataFrame:
    frame = pd.DataFrame(data.customers(rows, seed=seed))
    return pd.DataFrame(
        {
            "visits": frame["support_calls"] * 3 + frame["tenure_months"] % 7,
            "discount": [None if i % 9 == 0 else (i % 5) * 2.5 for i in range(rows)],
            "plan": frame["plan"],
            "spend": frame["monthly_charges"] * 1.5,
        }
    )


@dataclass
class World:
    store: InMemoryObjectStore
    registry: Registry
    models: dict[str, OnnxModel]

    def run(self, model: str, name: str, body: bytes, *, tags: dict[str, str] | None = None, rows: int = 300) -> Any:
        key = f"batch/{model}/input/{name}"
        stored = self.store.put(DATA, key, body)
        if tags:
            self.store.tag(DATA, key, tags, stored.version_id)
        job = {"bucket": DATA, "key": key, "version_id": stored.version_id, "model": model}
        execution = layout.execution_name(model, key, stored.version_id)
        planned = BatchPlanner(self.store, self.registry, ARTIFACTS, ChunkLimits(rows=rows)).plan(job, execution)
        writers = InMemoryObjectWriters(self.store)
        scorer = ChunkScorer(self.store, writers, ARTIFACTS)
        if planned["chunks"]:
            for item in json.loads(self.store.get(ARTIFACTS, planned["manifest"])):
                scorer.score(planned["work"], item)
        outcome = BatchFinisher(self.store, writers, ARTIFACTS).finish(job, execution)
        report = json.loads(self.store.get(DATA, outcome["report"].removeprefix(f"s3://{DATA}/")))
        return Ran(outcome, report, key, stored.version_id, planned, execution)


@dataclass
class Ran:
    outcome: dict[str, Any]
    report: dict[str, Any]
    key: str
    version_id: str
    planned: dict[str, Any]
    execution: str


def register_champion(store: InMemoryObjectStore, registry: Registry, contract: DatasetContract, onnx: bytes) -> None:
    registry.declare_dataset(contract)
    register_model(registry, store, ARTIFACTS, contract.name, onnx)


@pytest.fixture(scope="module")
def onnx_models() -> dict[str, bytes]:
    return {
        "churn": train(CHURN, pd.DataFrame(data.customers(600, seed=1))).onnx_model,
        "spend": train(SPEND, spend_frame(600, seed=2)).onnx_model,
    }


@pytest.fixture
def world(onnx_models: dict[str, bytes]) -> World:
    store, registry = InMemoryObjectStore(), Registry(InMemoryTable())
    register_champion(store, registry, CHURN, onnx_models["churn"])
    register_champion(store, registry, SPEND, onnx_models["spend"])
    registry.declare_dataset(CHURN.model_copy(update={"name": "fresh"}))  # declared, never trained
    return World(
        store,
        registry,
        {name: OnnxModel(body, c) for (name, body), c in zip(onnx_models.items(), (CHURN, SPEND), strict=True)},
    )


def api_predictions(model: OnnxModel, rows: list[dict[str, Any]]) -> list[list[str]]:
    """What the predict API answers for these records, as the output's prediction fields."""
    outputs = model.predict([{f: row[f] for f in model.contract.feature_names} for row in rows])
    return [[o["label"], str(o["probabilities"]["no"]), str(o["probabilities"]["yes"]), "1"] for o in outputs]


def same_number(text: str, value: str) -> bool:
    return float(text) == float(value)


def churn_rows(rows: int, seed: int) -> list[dict[str, Any]]:
    records = data.customers(rows, seed=seed)
    for i, record in enumerate(records):
        record["note"] = f'order {i}, "rush"\nsecond line' if i % 50 == 0 else f"n{i}"
    return records


def test_csv_output_keeps_each_record_as_written_and_scores_it_as_the_api(world: World) -> None:
    # Given 1,000 customers with a free-text column (commas, quotes and newlines in some values), four rows the
    # contract refuses, a record of the wrong width and a blank line
    records = churn_rows(1000, seed=3)
    records[10]["tenure_months"] = "twelve"
    records[320]["monthly_charges"] = 2000  # above the contract's maximum
    records[640]["plan"] = "gold"
    records[901]["support_calls"] = ""

    def rows(part: list[dict[str, Any]]) -> bytes:
        return data.to_csv(part).split(b"\n", 1)[1]  # without its header

    body = data.to_csv(records[:500]) + b"1,2,3\n" + rows(records[500:700]) + b"\n" + rows(records[700:])
    ragged_line = body[: body.index(b"\n1,2,3\n") + 1].count(b"\n") + 1
    # When it is scored in chunks of 300 records
    ran = world.run("churn", "customers.csv", body)
    # Then every record of the header's width is in the output, in order, its fields as written, with predictions
    assert ran.outcome["status"] == "scored" and ran.planned["chunks"] == 4
    assert (ran.outcome["rows"], ran.outcome["scored"], ran.outcome["not_scored"], ran.outcome["left_out"]) == (
        1001,
        996,
        4,
        1,
    )
    output = world.store.get(DATA, "batch/churn/output/customers.csv").decode()
    parsed = list(csv.reader(io.StringIO(output, newline="")))
    header = list(records[0])
    assert parsed[0] == [*header, *PREDICTIONS]
    assert [row[: len(header)] for row in parsed[1:]] == [[str(r[c]) for c in header] for r in records]
    for record_text in body.decode().split("\n")[1:30]:  # byte for byte, not re-serialised
        if '"' not in record_text:
            assert output.count(record_text + ",") == 1
    # And valid rows carry exactly what the predict API answers; refused rows keep their place, predictions empty
    refused = {10, 320, 640, 901}
    valid = [r for i, r in enumerate(records) if i not in refused]
    expected = iter(api_predictions(world.models["churn"], valid))
    for index, row in enumerate(parsed[1:]):
        fields = row[len(header) :]
        if index in refused:
            assert fields == ["", "", "", ""]
        else:
            label, no, yes, version = next(expected)
            assert fields[0] == label and same_number(fields[1], no) and same_number(fields[2], yes)
            assert fields[3] == version
    # And the report names each fault by check, column, record, file line and value
    issues = {(i["check"], i["column"]): i for i in ran.report["issues"]}
    assert issues["parse", None]["lines"] == [ragged_line] and issues["parse", None]["rows"] == [500]
    assert issues["types", "tenure_months"]["rows"] == [10] and issues["types", "tenure_months"]["values"] == ["twelve"]
    assert issues["ranges", "monthly_charges"]["rows"] == [320]
    assert issues["categories", "plan"]["rows"] == [641]  # the record of the wrong width counts as a record
    assert "above the maximum 1000" in issues["ranges", "monthly_charges"]["message"]
    assert issues["categories", "plan"]["values"] == ["gold"]
    assert issues["nulls", "support_calls"]["row_count"] == 1
    assert list(issues) == [
        ("parse", None),
        ("types", "tenure_months"),
        ("nulls", "support_calls"),
        ("ranges", "monthly_charges"),
        ("categories", "plan"),
    ]
    file_lines = body.decode().split("\n")
    assert file_lines[issues["types", "tenure_months"]["lines"][0] - 1].startswith("twelve,")
    assert ",gold," in file_lines[issues["categories", "plan"]["lines"][0] - 1]
    assert world.store.tags(DATA, ran.key, ran.version_id) == {
        layout.STATUS_TAG: "scored",
        layout.VERSION_TAG: "1",
    }


def test_crlf_records_and_an_id_column(world: World) -> None:
    # Given CRLF line ends and the upload's id column tag
    records = data.customers(50, seed=5)
    for i, record in enumerate(records):
        record["customer"] = f"Doe, J{i}" if i % 2 else f"c{i}"
    body = data.to_csv(records).replace(b"\n", b"\r\n")
    ran = world.run("churn", "ids.csv", body, tags={layout.ID_COLUMN_TAG: "customer"}, rows=20)
    # Then the output holds that column only, quoted where needed, beside the predictions
    assert ran.outcome["status"] == "scored" and ran.outcome["scored"] == 50
    parsed = list(csv.reader(io.StringIO(world.store.get(DATA, "batch/churn/output/ids.csv").decode(), newline="")))
    assert parsed[0] == ["customer", *PREDICTIONS]
    assert [row[0] for row in parsed[1:]] == [r["customer"] for r in records]
    assert [row[1] for row in parsed[1:]] == [p[0] for p in api_predictions(world.models["churn"], records)]


def test_parquet_output_is_typed_in_order_with_nulls_where_refused(world: World) -> None:
    # Given a Parquet file of 900 rows in row groups of 100, one row with an unknown plan, one with a huge number
    frame = pd.DataFrame(data.customers(900, seed=6))
    frame["customer_id"] = range(900)
    frame.loc[5, "plan"] = "gold"
    frame["monthly_charges"] = frame["monthly_charges"].astype("float64")
    frame.loc[700, "monthly_charges"] = 1e300
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), sink, row_group_size=100)
    # When it is scored in chunks of at least 250 rows (three row groups each)
    ran = world.run("churn", "folder/customers.parquet", sink.getvalue(), rows=250)
    # Then the output is Parquet with every input column, typed predictions, and nulls in the refused rows
    assert ran.outcome["status"] == "scored" and ran.planned["chunks"] == 3
    table = pq.read_table(io.BytesIO(world.store.get(DATA, "batch/churn/output/folder/customers.parquet")))
    assert table.column_names == [*frame.columns, *PREDICTIONS]
    assert table.schema.field("probability_yes").type == pa.float64()
    assert table.schema.field("model_version").type == pa.int64()
    assert table.column("customer_id").to_pylist() == list(range(900))
    out = table.to_pylist()
    assert out[5]["prediction"] is None and out[5]["model_version"] is None and out[700]["prediction"] is None
    valid = [r for i, r in enumerate(frame.to_dict("records")) if i not in (5, 700)]
    expected = world.models["churn"].predict([{f: r[f] for f in CHURN.feature_names} for r in valid])
    got = [r for i, r in enumerate(out) if i not in (5, 700)]
    assert [r["prediction"] for r in got] == [e["label"] for e in expected]
    assert [r["probability_yes"] for r in got] == [e["probabilities"]["yes"] for e in expected]
    issues = {(i["check"], i["column"]): i for i in ran.report["issues"]}
    assert issues["categories", "plan"]["rows"] == [5] and issues["categories", "plan"]["lines"] == []
    assert issues["ranges", "monthly_charges"]["rows"] == [700]  # above max, and beyond float32 too
    assert ran.report["rows"] == 900 and ran.report["not_scored"] == 2


@pytest.mark.parametrize("file_format", ["csv", "parquet"])
def test_a_regressor_scores_nullable_features_and_answers_as_the_api(world: World, file_format: str) -> None:
    frame = spend_frame(120, seed=8).drop(columns=["spend"])
    if file_format == "csv":
        body = frame.to_csv(index=False).encode()
    else:
        sink = io.BytesIO()
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), sink)
        body = sink.getvalue()
    ran = world.run("spend", f"visits.{file_format}", body)
    assert ran.outcome["status"] == "scored" and ran.outcome["scored"] == 120  # nulls in `discount` are imputed
    output = world.store.get(DATA, f"batch/spend/output/visits.{file_format}")
    if file_format == "csv":
        values = [float(row[-2]) for row in list(csv.reader(io.StringIO(output.decode())))[1:]]
    else:
        values = pq.read_table(io.BytesIO(output)).column("prediction").to_pylist()
    records = [{k: (None if pd.isna(v) else v) for k, v in r.items()} for r in frame.to_dict("records")]
    assert values == [p["value"] for p in world.models["spend"].predict(records)]


@pytest.mark.parametrize(
    ("model", "name", "body", "tags", "check", "message"),
    [
        ("fresh", "a.csv", b"tenure_months\n1\n", None, "model", "model 'fresh' has no champion yet"),
        ("nobody", "a.csv", b"x\n1\n", None, "model", "no model named 'nobody'"),
        ("churn", "a.csv.gz", gzip.compress(b"a\n1\n", mtime=0), None, "format", "cannot be cut into chunks"),
        ("churn", "a.txt", b"a\n1\n", None, "format", "unsupported file type"),
        ("churn", "a.csv", b"PAR1....", None, "parse", "named .csv but is a Parquet file"),
        ("churn", "a.parquet", b"a,b\n1,2\n", None, "parse", "named .parquet but is not Parquet"),
        (
            "churn",
            "a.csv",
            b"Tenure_Months,monthly_charges,support_calls,plan,region\n1,2,3,basic,north\n",
            None,
            "schema",
            "feature column 'tenure_months' is missing from the header; the file has 'Tenure_Months'",
        ),
        (
            "churn",
            "a.csv",
            b"tenure_months,monthly_charges,support_calls,plan,region,prediction\n1,2,3,basic,north,x\n",
            None,
            "schema",
            "column 'prediction' would clash with the output's prediction columns",
        ),
        (
            "churn",
            "a.csv",
            b"tenure_months,monthly_charges,support_calls,plan,region\n1,2,3,basic,north\n",
            {layout.ID_COLUMN_TAG: "customer"},
            "schema",
            "the id column 'customer' (loopml-id-column tag) is not in the header",
        ),
        ("churn", "a.csv", b'tenure_months,plan\n1,"never closed\n', None, "parse", "ends inside a quoted field"),
    ],
    ids=[
        "no-champion",
        "no-model",
        "csv.gz",
        "txt",
        "misnamed-csv",
        "misnamed-parquet",
        "missing",
        "clash",
        "id",
        "quote",
    ],
)
def test_a_file_that_cannot_be_scored_is_refused_with_a_report_and_no_output(
    world: World, model: str, name: str, body: bytes, tags: dict[str, str] | None, check: str, message: str
) -> None:
    ran = world.run(model, name, body, tags=tags)
    assert ran.outcome["status"] == "refused" and ran.outcome["output"] is None and ran.planned["chunks"] == 0
    assert [issue["check"] for issue in ran.report["issues"]] == [check]
    assert message in ran.report["issues"][0]["message"] and message in ran.report["summary"]
    assert world.store.list_keys(DATA, f"batch/{model}/output/") == [f"batch/{model}/output/a.report.json"]
    assert world.store.tags(DATA, ran.key, ran.version_id)[layout.STATUS_TAG] == "refused"


def test_a_chunk_that_is_not_utf8_refuses_the_file_naming_its_line(world: World) -> None:
    lines = data.to_csv(data.customers(700, seed=9)).split(b"\n")
    lines[600] = b"12,30.5,1,basic,n\xf8rth,no"  # Latin-1, on file line 601
    ran = world.run("churn", "latin1.csv", b"\n".join(lines))
    assert ran.outcome["status"] == "refused" and ran.outcome["output"] is None
    [issue] = ran.report["issues"]
    assert issue["check"] == "parse" and "not UTF-8" in issue["message"]
    assert issue["lines"] == [601] and issue["message"].startswith("at line 601: not readable as CSV: not UTF-8")


def test_a_damaged_parquet_row_group_refuses_the_file_naming_it(world: World) -> None:
    # Given a Parquet file whose footer is sound but whose second row group's pages are overwritten
    sink = io.BytesIO()
    frame = pd.DataFrame(data.customers(400, seed=13))
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), sink, row_group_size=200, compression="none")
    body = bytearray(sink.getvalue())
    group = pq.ParquetFile(io.BytesIO(bytes(body))).metadata.row_group(1)
    start = group.column(0).data_page_offset
    body[start : start + 64] = b"\xff" * 64
    # When it is scored a row group per chunk
    ran = world.run("churn", "damaged.parquet", bytes(body), rows=200)
    # Then the file is refused, the report naming the row group that cannot be read, and nothing is output
    assert ran.outcome["status"] == "refused" and ran.outcome["output"] is None
    [issue] = ran.report["issues"]
    assert issue["check"] == "parse" and issue["message"].startswith("row groups 1-1 not readable as Parquet")


def test_a_chunk_whose_worker_failed_fails_the_batch_with_nothing_output(world: World) -> None:
    # Given a planned batch whose first chunk was scored and whose second never was (its worker failed for good)
    body = data.to_csv(data.customers(500, seed=10))
    key = "batch/churn/input/half.csv"
    stored = world.store.put(DATA, key, body)
    job = {"bucket": DATA, "key": key, "version_id": stored.version_id, "model": "churn"}
    planned = BatchPlanner(world.store, world.registry, ARTIFACTS, ChunkLimits(rows=300)).plan(job, "run-a")
    first = json.loads(world.store.get(ARTIFACTS, planned["manifest"]))[0]
    ChunkScorer(world.store, InMemoryObjectWriters(world.store), ARTIFACTS).score(planned["work"], first)
    finisher = BatchFinisher(world.store, InMemoryObjectWriters(world.store), ARTIFACTS)
    # When the batch finishes (the local interpreter lets a failed child through; AWS fails the map, caught)
    outcome = finisher.finish(job, "run-a")
    caught = finisher.record_failure(
        job, "run-a", "ScoreChunks", {"Error": "States.ExceedToleratedFailureThreshold", "Cause": "1 of 2 items failed"}
    )
    # Then the batch failed, says why, and output nothing
    for ended in (outcome, caught):
        assert ended["status"] == "failed" and ended["output"] is None
    assert "1 of 2 chunks have no result (chunk 1)" in outcome["summary"]
    assert "States.ExceedToleratedFailureThreshold: 1 of 2 items failed" in caught["summary"]
    assert world.store.list_keys(DATA, "batch/churn/output/half.csv") == []
    assert world.store.tags(DATA, key, stored.version_id)[layout.STATUS_TAG] == "failed"


def test_a_plan_that_crashed_fails_the_batch_with_the_lambda_error(world: World) -> None:
    stored = world.store.put(DATA, "batch/churn/input/x.csv", b"a\n1\n")
    job = {"bucket": DATA, "key": stored.key, "version_id": stored.version_id, "model": "churn"}
    error = {"Error": "Lambda.Unknown", "Cause": json.dumps({"errorType": "MemoryError", "errorMessage": "out"})}
    finisher = BatchFinisher(world.store, InMemoryObjectWriters(world.store), ARTIFACTS)
    outcome = finisher.record_failure(job, "run-b", "Plan", error)
    assert outcome["status"] == "failed" and "Lambda.Unknown: MemoryError: out" in outcome["summary"]
    report = json.loads(world.store.get(DATA, "batch/churn/output/x.report.json"))
    assert report["error"] == {"step": "Plan", "error": "Lambda.Unknown", "cause": "MemoryError: out"}
    assert report["chunks"] == 0 and report["finished_chunks"] == [] and "no chunk was planned" in report["summary"]


SCRIPT = textwrap.dedent(
    """
    import importlib.abc, io, json, sys

    attempted = set()

    class Missing(importlib.abc.MetaPathFinder):
        # What the scoring layer does not ship: importing it fails, as it would on Lambda.
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"pandas", "sklearn", "scipy", "fastparquet", "skl2onnx"}:
                attempted.add(name.split(".")[0])
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Missing())

    from loopml_core.batch.planning import plan_csv, plan_parquet
    from loopml_core.batch.scoring import CsvJob, ParquetJob, Predictor, score_csv_chunk, score_parquet_chunk
    from loopml_core.contract import load_contract
    from loopml_core.serving import OnnxModel

    contract = load_contract(open(sys.argv[1]).read())
    predictor = Predictor(OnnxModel(open(sys.argv[2], "rb").read(), contract), 1)
    text = open(sys.argv[3], "rb").read()
    layout = plan_csv(io.BytesIO(text), chunk_rows=50, chunk_bytes=1 << 30)
    out = io.BytesIO()
    job = CsvJob(contract, layout.header, layout.header_text)
    scored = [score_csv_chunk(job, chunk, io.BytesIO(text), predictor, out).scored for chunk in layout.chunks]
    import pyarrow.parquet as pq
    parquet = open(sys.argv[4], "rb").read()
    chunks = plan_parquet(pq.ParquetFile(io.BytesIO(parquet)).metadata, chunk_rows=50, chunk_bytes=1 << 30)
    part = io.BytesIO()
    scored.append(score_parquet_chunk(ParquetJob(contract), chunks[0], io.BytesIO(parquet), predictor, part).scored)
    print(scored, out.getvalue().count(b"\\n"), sorted(attempted))
    """
)


def test_the_scoring_path_runs_on_pyarrow_numpy_and_onnxruntime_alone(tmp_path: Path, onnx_models) -> None:
    # Given an interpreter where pandas, scikit-learn and scipy cannot be imported (the scoring layer ships none)
    (tmp_path / "contract.yaml").write_text((ROOT / "infra" / "demo" / "churn.yaml").read_text())
    (tmp_path / "model.onnx").write_bytes(onnx_models["churn"])
    (tmp_path / "rows.csv").write_bytes(data.to_csv(data.customers(120, seed=11)))
    frame = pd.DataFrame(data.customers(80, seed=12))
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "rows.parquet")
    files = [str(tmp_path / name) for name in ("contract.yaml", "model.onnx", "rows.csv", "rows.parquet")]
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, *files],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT / "layers" / "core"), "PATH": "/usr/bin:/bin"},
        timeout=120,
        check=False,
    )
    # Then CSV chunks and a Parquet chunk are scored, and nothing on the way even tries to import pandas
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[50, 50, 20, 80] 121 []"
