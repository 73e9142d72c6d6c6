"""Batch scoring: a file under `batch/<model>/input/` -> plan -> chunks scored in parallel -> one output and a report.

The steps of the batch state machine (`infra/statemachine/batch.asl.json`), run by a Step Functions Distributed Map
in the cloud and by the same definition on the local cloud:

* `BatchStarter` (S3 trigger): one execution per uploaded object version, named after it, so a redelivered event
  starts nothing new.
* `BatchPlanner`: pins the champion's version, reads only what it needs of the file (CSV: one streamed pass that
  cuts byte ranges at record boundaries; Parquet: the footer), checks the columns, and writes the chunks as a JSON
  array for the Distributed Map's ItemReader. A file that cannot be scored at all is refused here, with a report.
* `ChunkScorer` (one child execution per chunk): scores its chunk in bounded memory and writes a part and the part's
  findings.
* `BatchFinisher`: joins the parts in order into `batch/<model>/output/<stem>.<csv|parquet>` (CSV parts are copied
  by S3 itself), merges the findings into `<stem>.report.json`, tags the input with the outcome, and returns it. Its
  failed mode (`record_failure`) runs when a step failed after its retries: the failed report, nothing joined. An
  input version that a newer upload of the same name superseded writes `<stem>.<version id>.*` instead, so an older
  upload's batch that ends later never overwrites the newer one's results.

No boto3 here: the adapters are injected. numpy, pyarrow and onnxruntime load only in the steps that use them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from loopml_core.adapters.object_store import ObjectStore, StoredObject
from loopml_core.adapters.object_writer import ObjectWriters
from loopml_core.adapters.pipeline import PipelineRunner
from loopml_core.batch import layout
from loopml_core.batch.job import ChunkResult, JobPlan, SourceRef
from loopml_core.batch.layout import BatchInput, BatchStatus, batch_input
from loopml_core.batch.settings import DEFAULT_CHUNK_BYTES, DEFAULT_CHUNK_ROWS
from loopml_core.clock import iso
from loopml_core.errors import NotFoundError
from loopml_core.models import ObjectRef
from loopml_core.registry import Registry
from loopml_core.uploads import Format, sniff

if TYPE_CHECKING:
    from loopml_core.batch.planning import Chunk
    from loopml_core.batch.scoring import Predictor
    from loopml_core.contract import DatasetContract

MAX_SUMMARY_CHARS = 2_000
MAX_CAUSE_CHARS = 1_000  # of a caught error's cause in the report; the execution's history keeps it whole
CONTENT_TYPES = {"csv": "text/csv", "parquet": "application/vnd.apache.parquet"}
OUTPUT_NAMES = (layout.PREDICTION, layout.MODEL_VERSION)


class BatchJobError(ValueError):
    """A step was given a job that is not a batch input (a bug in the caller: the start step filters keys)."""


class UnreadableFileError(ValueError):
    """The file is not what its name says, or not readable as that format; the message says which."""


def _job_input(job: dict[str, Any]) -> BatchInput:
    batch = batch_input(str(job["bucket"]), str(job["key"]), job.get("version_id"))
    if batch is None:
        raise BatchJobError(f"s3://{job['bucket']}/{job['key']} is not under {layout.BATCH}<model>/{layout.INPUT}")
    return batch


class BatchStarter:
    def __init__(self, runner: PipelineRunner) -> None:
        self.runner = runner

    def start(self, bucket: str, key: str, version_id: str | None) -> dict[str, Any]:
        """Start the batch of one uploaded object version; any other key (an output, a report) is left alone."""
        batch = batch_input(bucket, key, version_id)
        if batch is None:
            return {"ignored": key, "reason": f"not a batch input ({layout.BATCH}<model>/{layout.INPUT}<file>)"}
        name = layout.execution_name(batch.model, key, version_id)
        job = {"bucket": bucket, "key": key, "version_id": version_id, "model": batch.model}
        execution = self.runner.start(name, {"job": job})
        return {"execution": name, "status": execution.status, "model": batch.model, "key": key}


@dataclass(frozen=True)
class ChunkLimits:
    """A chunk closes at whichever comes first (a Parquet row group is never split)."""

    rows: int = DEFAULT_CHUNK_ROWS
    bytes: int = DEFAULT_CHUNK_BYTES


class BatchPlanner:
    def __init__(
        self, store: ObjectStore, registry: Registry, artifact_bucket: str, limits: ChunkLimits | None = None
    ) -> None:
        self.store = store
        self.registry = registry
        self.artifact_bucket = artifact_bucket
        self.limits = limits or ChunkLimits()

    def plan(self, job: dict[str, Any], execution: str) -> dict[str, Any]:
        """Decide the model version and the chunks (or why nothing can be scored); returns what the state machine
        needs to run the Distributed Map over them."""
        batch = _job_input(job)
        work = layout.work_prefix(batch.model, execution)
        plan = JobPlan(
            execution=execution,
            model=batch.model,
            source=SourceRef(bucket=batch.bucket, key=batch.key, version_id=batch.version_id),
            name=batch.name,
            stem=batch.stem,
            report_key=layout.report_key(batch.model, batch.stem),
            planned_at=iso(),
        )
        chunks = self._decide(batch, plan)
        if not plan.refused:
            plan.chunks = len(chunks)
            body = json.dumps([chunk.to_json() for chunk in chunks]).encode()
            self.store.put(self.artifact_bucket, layout.manifest_key(work), body, "application/json")
        self.store.put(self.artifact_bucket, layout.plan_key(work), plan.model_dump_json().encode(), "application/json")
        return {
            "work": work,
            "bucket": self.artifact_bucket,
            "manifest": layout.manifest_key(work),
            "chunks": plan.chunks,
            "model_version": plan.model_version,
            "format": plan.format,
        }

    def _decide(self, batch: BatchInput, plan: JobPlan) -> list[Chunk]:
        def refuse(check: str, message: str, column: str | None = None) -> list[Chunk]:
            plan.issues.append(_issue(check, message, column))
            return []

        try:
            contract = self.registry.contract(batch.model)
        except NotFoundError:
            return refuse("model", f"no model named '{batch.model}': declare its dataset and train it first")
        try:
            champion = self.registry.champion_version(batch.model)
        except NotFoundError:
            return refuse("model", f"model '{batch.model}' has no champion yet: nothing to score with")
        plan.model_version, plan.contract = champion.version, contract.model_dump(mode="json")
        plan.artifact = ObjectRef.model_validate(champion.artifact.model_dump())
        fmt = batch.format
        if fmt is Format.CSV_GZ:
            return refuse(
                "format",
                "a gzip-compressed CSV cannot be cut into chunks to score in parallel (a gzip stream is read from its "
                "start only): upload it decompressed (.csv) or as Parquet",
            )
        if fmt is None:
            return refuse("format", f"unsupported file type: '{batch.name[-100:]}'; upload .csv or .parquet")
        plan.format = fmt.value
        tags = self.store.tags(batch.bucket, batch.key, batch.version_id)
        plan.id_column = tags.get(layout.ID_COLUMN_TAG) or None
        from loopml_core.batch.planning import UnplannableError

        try:
            chunks = self._csv(batch, plan) if fmt is Format.CSV else self._parquet(batch, plan)
        except (UnplannableError, UnreadableFileError) as error:
            return refuse("parse", str(error))
        for issue in _column_issues(contract, plan.header, plan.id_column):
            plan.issues.append(issue)
        if plan.refused:
            return []
        plan.output_key = layout.output_key(batch.model, batch.stem, plan.extension)
        return chunks

    def _csv(self, batch: BatchInput, plan: JobPlan) -> list[Chunk]:
        from loopml_core.batch.planning import Chunk, plan_csv

        with self.store.open(batch.bucket, batch.key, batch.version_id) as stream:
            head = stream.read(4)
            actual = sniff(head)
            if actual is not None:
                what = "gzip-compressed data" if actual is Format.CSV_GZ else "a Parquet file"
                raise UnreadableFileError(f"'{batch.name}' is named .csv but is {what}; name it for what it holds")
            csv = plan_csv(_Rewound(head, stream), chunk_rows=self.limits.rows, chunk_bytes=self.limits.bytes)
        plan.header, plan.header_text = csv.header, csv.header_text
        # A file of a header and no rows still gets one (empty) chunk: its worker writes the output's header.
        return csv.chunks or [Chunk(0, csv.data_start, csv.size, None)]

    def _parquet(self, batch: BatchInput, plan: JobPlan) -> list[Chunk]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        from loopml_core.batch.planning import Chunk, plan_parquet

        with self.store.open_random_access(batch.bucket, batch.key, batch.version_id) as handle:
            if sniff(handle.read(4)) is not Format.PARQUET:
                raise UnreadableFileError(
                    f"'{batch.name}' is named .parquet but is not Parquet (it does not start with PAR1)"
                )
            handle.seek(0)
            try:
                parquet = pq.ParquetFile(handle, pre_buffer=False)
            except (pa.ArrowException, OSError) as error:
                raise UnreadableFileError(f"not readable as Parquet: {str(error).strip()[:300]}") from None
            plan.header = list(parquet.schema_arrow.names)
            chunks = plan_parquet(parquet.metadata, chunk_rows=self.limits.rows, chunk_bytes=self.limits.bytes)
        return chunks or [Chunk(0, row_groups=(), rows=0)]


class _Rewound:
    """A stream whose first bytes were read already, served again first."""

    def __init__(self, head: bytes, rest: Any) -> None:
        self._head, self._rest = head, rest

    def read(self, size: int = -1) -> bytes:
        if self._head:
            head, self._head = self._head, b""
            if size < 0:
                return head + self._rest.read()
            return head + self._rest.read(max(0, size - len(head)))
        data: bytes = self._rest.read(size)
        return data


def _issue(check: str, message: str, column: str | None = None) -> dict[str, Any]:
    """An issue about the whole file, in the shape of the validation report's `Issue` (besides its checks, a batch
    is refused for its `model` and fails with an `error`)."""
    return {"check": check, "column": column, "rows": [], "lines": [], "row_count": 0, "message": message, "values": []}


def _column_issues(contract: DatasetContract, header: list[str], id_column: str | None) -> list[dict[str, Any]]:
    issues = []
    present = set(header)
    folded = {name.casefold(): name for name in header}
    for name in contract.feature_names:
        if name not in present:
            near = folded.get(name.casefold())
            hint = f"; the file has '{near[:60]}' (names are case-sensitive)" if near else ""
            issues.append(_issue("schema", f"feature column '{name}' is missing from the header{hint}", name))
    if id_column is not None and id_column not in present:
        issues.append(
            _issue("schema", f"the id column '{id_column[:100]}' ({layout.ID_COLUMN_TAG} tag) is not in the header")
        )
    kept = [id_column] if id_column is not None else header
    for name in kept:
        if name in OUTPUT_NAMES or name.startswith(layout.PROBABILITY_PREFIX):
            issues.append(
                _issue(
                    "schema",
                    f"column '{name[:100]}' would clash with the output's prediction columns "
                    f"({', '.join(OUTPUT_NAMES)}, {layout.PROBABILITY_PREFIX}<class>): rename it, or keep only an id "
                    f"column ({layout.ID_COLUMN_TAG} tag)",
                    name,
                )
            )
    return issues


class ChunkScorer:
    """Scores chunks; a warm container keeps the last plan and the loaded model between chunks of one batch."""

    def __init__(self, store: ObjectStore, writers: ObjectWriters, artifact_bucket: str) -> None:
        self.store = store
        self.writers = writers
        self.artifact_bucket = artifact_bucket
        self._plans: dict[str, JobPlan] = {}
        self._predictors: dict[tuple[str, str, str], Predictor] = {}

    def _plan(self, work: str) -> JobPlan:
        # Replaced whole, never mutated: invocations running side by side (the local cloud runs a Distributed Map's
        # children on threads of one process) each keep the plan they read.
        plan = self._plans.get(work)
        if plan is None:
            plan = JobPlan.model_validate_json(self.store.get(self.artifact_bucket, layout.plan_key(work)))
            self._plans = {work: plan}
        return plan

    def _predictor(self, plan: JobPlan, contract: DatasetContract) -> Predictor:
        from loopml_core.batch.scoring import Predictor
        from loopml_core.serving import OnnxModel

        artifact = plan.artifact
        assert artifact is not None and plan.model_version is not None, "a plan with chunks pins a model version"
        key = (artifact.bucket, artifact.key, artifact.version_id)
        predictor = self._predictors.get(key)
        if predictor is None:  # one model in memory at most; an onnxruntime session may be run from several threads
            onnx = self.store.get(artifact.bucket, artifact.key, artifact.version_id)
            predictor = Predictor(OnnxModel(onnx, contract), plan.model_version)
            self._predictors = {key: predictor}
        return predictor

    def score(self, work: str, item: dict[str, Any]) -> dict[str, Any]:
        """Score one chunk of the manifest; writes its part and its result beside it."""
        from loopml_core.batch.planning import Chunk
        from loopml_core.batch.scoring import CsvJob, ParquetJob, score_csv_chunk, score_parquet_chunk
        from loopml_core.contract import DatasetContract

        plan = self._plan(work)
        chunk = Chunk.from_json(item)
        assert plan.contract is not None
        contract = DatasetContract.model_validate(plan.contract)
        predictor = self._predictor(plan, contract)
        source = plan.source
        part = layout.part_key(work, chunk.index, plan.extension)
        sink = self.writers.open(self.artifact_bucket, part, CONTENT_TYPES[plan.extension])
        with self.store.open_random_access(source.bucket, source.key, source.version_id) as handle:
            if plan.format == Format.PARQUET.value:
                tally = score_parquet_chunk(ParquetJob(contract, plan.id_column), chunk, handle, predictor, sink)
            else:
                job = CsvJob(contract, plan.header, plan.header_text or "", plan.id_column)
                tally = score_csv_chunk(job, chunk, handle, predictor, sink)
        sink.close()  # only once the chunk is done: a crash leaves an incomplete upload, never a partial part
        result = ChunkResult(
            index=chunk.index,
            records=tally.records,
            output_rows=tally.output_rows,
            scored=tally.scored,
            columns=tally.columns,
            findings=tally.findings.to_json(),
            fatal=tally.fatal.model_dump(mode="json") if tally.fatal is not None else None,
            part_key=part,
            part_version_id=sink.stored.version_id,
            seconds=round(tally.seconds, 3),
        )
        summary = layout.summary_key(work, chunk.index)
        self.store.put(self.artifact_bucket, summary, result.model_dump_json().encode(), "application/json")
        return {"index": chunk.index, "records": tally.records, "scored": tally.scored, "unreadable": bool(tally.fatal)}


@dataclass(frozen=True)
class Failure:
    """Why a batch failed: the step, and the error and cause Step Functions caught (or Finish found)."""

    step: str  # the state that failed: Plan, ScoreChunks or Finish
    error: str
    cause: str

    @classmethod
    def caught(cls, step: str, error: dict[str, Any] | None) -> Failure:
        """From what a Catch recorded (`{"Error", "Cause"}`); a Lambda error's Cause is a JSON document whose type
        and message are kept, not its stack trace."""
        error = error or {}
        name = str(error.get("Error") or "Error")
        cause = str(error.get("Cause") or "")
        try:
            parsed = json.loads(cause)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and parsed.get("errorMessage"):
            kind = str(parsed.get("errorType") or name)
            cause = str(parsed["errorMessage"]) if kind == name else f"{kind}: {parsed['errorMessage']}"
        return cls(step, name, _cut(cause.strip() or "no cause given", MAX_CAUSE_CHARS))

    def to_json(self) -> dict[str, str]:
        return {"step": self.step, "error": self.error, "cause": self.cause}


@dataclass(frozen=True)
class Placement:
    """Where a batch writes its output and report: `<stem>.*` while the input version it scored is the input key's
    current version, `<stem>.<version id>.*` once a newer upload of the same name has superseded it."""

    model: str
    stem: str
    superseded_by: str | None = None  # the input key's current version, when it is not the one scored

    def output_key(self, extension: str) -> str:
        return layout.output_key(self.model, self.stem, extension)

    @property
    def report_key(self) -> str:
        return layout.report_key(self.model, self.stem)


class BatchFinisher:
    def __init__(self, store: ObjectStore, writers: ObjectWriters, artifact_bucket: str) -> None:
        self.store = store
        self.writers = writers
        self.artifact_bucket = artifact_bucket

    def finish(self, job: dict[str, Any], execution: str) -> dict[str, Any]:
        """Join the parts, write the report, tag the input: the batch's one outcome."""
        batch = _job_input(job)
        work = layout.work_prefix(batch.model, execution)
        plan = self._plan(work)
        if plan is None:
            failure = Failure(
                "Plan", "NoPlan", "the plan step left no plan.json (it failed, or its work files expired)"
            )
            return self._failed(batch, None, execution, failure)
        if plan.refused:
            return self._record(batch, plan, BatchStatus.REFUSED, plan.issues)
        results = self._results(work, plan)
        missing = [index for index, result in enumerate(results) if result is None]
        if missing:
            # AWS fails the map when a chunk's worker fails for good (caught: `record_failure`); moto's interpreter
            # lets it through, so the results are checked here on both backends.
            shown = _ranges_text(missing)
            cause = f"{len(missing)} of {plan.chunks} chunks have no result (chunk {shown}): their worker failed"
            return self._failed(batch, plan, execution, Failure("ScoreChunks", "ChunksMissing", cause))
        done = [result for result in results if result is not None]
        fatal = next((result.fatal for result in done if result.fatal is not None), None)
        if fatal is not None:
            return self._record(batch, plan, BatchStatus.REFUSED, [fatal])
        return self._scored(batch, plan, done)

    def record_failure(
        self, job: dict[str, Any], execution: str, step: str, error: dict[str, Any] | None
    ) -> dict[str, Any]:
        """The failed mode, run when a step failed after its retries (a Catch): the failed report names the step,
        the error and its cause and the chunks that had finished; the input is tagged. Nothing is joined."""
        batch = _job_input(job)
        plan = self._plan(layout.work_prefix(batch.model, execution))
        return self._failed(batch, plan, execution, Failure.caught(step, error))

    def _plan(self, work: str) -> JobPlan | None:
        try:
            return JobPlan.model_validate_json(self.store.get(self.artifact_bucket, layout.plan_key(work)))
        except NotFoundError:
            return None

    def _results(self, work: str, plan: JobPlan) -> list[ChunkResult | None]:
        results: list[ChunkResult | None] = []
        for index in range(plan.chunks):
            try:
                body = self.store.get(self.artifact_bucket, layout.summary_key(work, index))
            except NotFoundError:
                results.append(None)
                continue
            results.append(ChunkResult.model_validate_json(body))
        return results

    def _finished_chunks(self, work: str) -> list[int]:
        """The chunks whose worker wrote its result (one listing, not a read per chunk)."""
        keys = self.store.list_keys(self.artifact_bucket, layout.parts_prefix(work))
        return sorted(int(PurePosixPath(key).stem) for key in keys if key.endswith(".json"))

    def _placement(self, batch: BatchInput) -> Placement:
        """Is the scored input version still the current version of its key? A deleted key (its current version a
        delete marker) and an unversioned bucket supersede nothing."""
        current = self.store.current_version(batch.bucket, batch.key)
        if batch.version_id is None or current is None or current == batch.version_id:
            return Placement(batch.model, batch.stem)
        return Placement(batch.model, layout.version_stem(batch.stem, batch.version_id), superseded_by=current)

    def _scored(self, batch: BatchInput, plan: JobPlan, results: list[ChunkResult]) -> dict[str, Any]:
        from loopml_core.batch.report import Findings
        from loopml_core.contract import DatasetContract

        assert plan.contract is not None
        place = self._placement(batch)
        output = self._join(batch.bucket, place.output_key(plan.extension), plan, results)
        if place.superseded_by is None:
            # The join can take minutes: a newer upload of the same name may have arrived meanwhile.
            now = self._placement(batch)
            if now.superseded_by is not None:
                self._give_back(batch, place, output, now.superseded_by)
                place = now
                output = self._join(batch.bucket, place.output_key(plan.extension), plan, results)
        findings, base = Findings(), 0
        for result in results:
            findings.extend(Findings.from_json(result.findings), base)
            base += result.records
        contract = DatasetContract.model_validate(plan.contract)
        issues = [issue.model_dump(mode="json") for issue in findings.issues(contract, len(plan.header))]
        totals = {
            "rows": base,
            "scored": sum(r.scored for r in results),
            "not_scored": sum(r.output_rows - r.scored for r in results),
            "left_out": sum(r.records - r.output_rows for r in results),
            "output": f"s3://{output.bucket}/{output.key}",
            "output_version_id": output.version_id,
            "columns": results[0].columns[:1_000] if results else [],
            "chunks": plan.chunks,
            "worker_seconds": round(sum(r.seconds for r in results), 3),
        }
        outcome = self._record(batch, plan, BatchStatus.SCORED, issues, totals, place)
        if place.superseded_by is None:
            self._keep_on_top(batch, output)
        return outcome

    def _give_back(self, batch: BatchInput, plain: Placement, ours: StoredObject, newer: str) -> None:
        """Our output landed on the file's name after a newer upload of it (version `newer`) superseded our input.
        If the newer upload's batch has already written its output, its report names it: put it back on top. If it
        has not, its Finish writes over ours later (and `_keep_on_top` covers its writing between the two)."""
        try:
            report = json.loads(self.store.get(batch.bucket, plain.report_key))
        except NotFoundError:
            return
        version = report.get("output_version_id")
        if report.get("source_version_id") != newer or not version:
            return
        if self.store.current_version(batch.bucket, ours.key) == ours.version_id:
            self.store.copy(batch.bucket, ours.key, batch.bucket, ours.key, version)

    def _keep_on_top(self, batch: BatchInput, ours: StoredObject) -> None:
        """After the report of a current input version: if an older version's batch, whose join ended after ours,
        wrote its output over ours before it saw it was superseded, and found our report not written yet (so it
        could not give ours back), put ours back on top. One HEAD when nothing happened, which is nearly always."""
        if self.store.current_version(batch.bucket, ours.key) in (ours.version_id, None):
            return
        if self._placement(batch).superseded_by is not None:
            return  # a newer upload's batch owns the name now
        self.store.copy(batch.bucket, ours.key, batch.bucket, ours.key, ours.version_id)

    def _join(self, bucket: str, key: str, plan: JobPlan, results: list[ChunkResult]) -> StoredObject:
        writer = self.writers.open(bucket, key, CONTENT_TYPES[plan.extension])
        if plan.format == Format.PARQUET.value:
            self._join_parquet(writer, results)
        else:
            for result in results:  # the first part starts with the header
                assert result.part_key is not None
                writer.append_object(self.artifact_bucket, result.part_key, result.part_version_id)
        writer.close()
        return writer.stored

    def _join_parquet(self, writer: Any, results: list[ChunkResult]) -> None:
        import pyarrow.parquet as pq

        parquet_writer = None
        for result in results:
            assert result.part_key is not None
            with self.store.open_random_access(self.artifact_bucket, result.part_key, result.part_version_id) as part:
                parquet = pq.ParquetFile(part)
                if parquet_writer is None:
                    parquet_writer = pq.ParquetWriter(writer, parquet.schema_arrow)
                for group in range(parquet.num_row_groups):  # one row group in memory at a time
                    parquet_writer.write_table(parquet.read_row_group(group))
        if parquet_writer is not None:
            parquet_writer.close()

    def _failed(self, batch: BatchInput, plan: JobPlan | None, execution: str, failure: Failure) -> dict[str, Any]:
        finished = self._finished_chunks(layout.work_prefix(batch.model, execution)) if plan and plan.chunks else []
        plan = plan or JobPlan(
            execution=execution,
            model=batch.model,
            source=SourceRef(bucket=batch.bucket, key=batch.key, version_id=batch.version_id),
            name=batch.name,
            stem=batch.stem,
            report_key=layout.report_key(batch.model, batch.stem),
            planned_at=iso(),
        )
        if plan.chunks:
            progress = f"{len(finished)} of {_count(plan.chunks, 'chunk')} had finished"
            progress += f" ({_ranges_text(finished)})" if finished else ""
        else:
            progress = "no chunk was planned"
        message = (
            f"the {failure.step} step failed: {failure.error}: {failure.cause}; {progress}; nothing was output. "
            "Upload the file again to retry"
        )
        totals = {"chunks": plan.chunks, "finished_chunks": _ranges(finished), "error": failure.to_json()}
        return self._record(batch, plan, BatchStatus.FAILED, [_issue("error", message)], totals)

    def _record(
        self,
        batch: BatchInput,
        plan: JobPlan,
        status: BatchStatus,
        issues: list[dict[str, Any]],
        totals: dict[str, Any] | None = None,
        place: Placement | None = None,
    ) -> dict[str, Any]:
        place = place or self._placement(batch)
        report_uri = f"s3://{batch.bucket}/{place.report_key}"
        document = {
            "source": batch.uri,
            "source_version_id": batch.version_id,
            "superseded_by": place.superseded_by,
            "model": batch.model,
            "model_version": plan.model_version,
            "status": str(status),
            "format": plan.format,
            "id_column": plan.id_column,
            "rows": 0,
            "scored": 0,
            "not_scored": 0,
            "left_out": 0,
            "output": None,
            "output_version_id": None,
            "report": report_uri,
            **(totals or {}),
            "issues": issues,
            "execution": plan.execution,
            "finished_at": iso(),
        }
        document["summary"] = _summary(document, batch.stem)
        stored = self.store.put(
            batch.bucket, place.report_key, json.dumps(document, indent=2).encode(), "application/json"
        )
        tags = self.store.tags(batch.bucket, batch.key, batch.version_id)
        tags[layout.STATUS_TAG] = str(status)
        if plan.model_version is not None:
            tags[layout.VERSION_TAG] = str(plan.model_version)
        self.store.tag(batch.bucket, batch.key, tags, batch.version_id)
        outcome_keys = ("status", "model", "model_version", "rows", "scored", "not_scored", "left_out", "output")
        return {
            **{key: document[key] for key in outcome_keys},
            "output_version_id": document["output_version_id"],
            "report": report_uri,
            "report_version_id": stored.version_id,
            "superseded_by": place.superseded_by,
            "summary": document["summary"],
        }


def _summary(document: dict[str, Any], stem: str) -> str:
    issues = document["issues"]

    def described(issue: dict[str, Any]) -> str:
        where = f"{issue['check']}[{issue['column']}]" if issue.get("column") else issue["check"]
        if not issue.get("row_count"):
            return f"{where}: {issue['message']}"
        label, shown = ("line", issue["lines"]) if issue.get("lines") else ("row", issue["rows"])
        listed = ", ".join(str(n) for n in shown[:5]) + (", ..." if issue["row_count"] > len(shown[:5]) else "")
        places = label if len(shown) == 1 else f"{label}s"
        return f"{where} {_count(issue['row_count'], 'row')} ({places} {listed}): {issue['message']}"

    shown = "; ".join(described(issue) for issue in issues[:5])
    more = f"; and {len(issues) - 5} more issues" if len(issues) > 5 else ""
    if document["status"] != BatchStatus.SCORED:
        text = f"{document['status']}: {shown}{more}"
    else:
        text = (
            f"scored {document['scored']:,} of {document['rows']:,} rows with {document['model']} "
            f"v{document['model_version']}"
        )
        if document["not_scored"]:
            text += f"; {_count(document['not_scored'], 'row')} the contract refuses: empty predictions"
        if document["left_out"]:
            text += f"; {_count(document['left_out'], 'record')} not of the header's width: left out"
        if issues:
            text += f": {shown}{more}"
    note = ""
    if document["superseded_by"]:
        note = (
            f" (superseded: a newer upload of this file, version {document['superseded_by']}, owns the name "
            f"{stem}.*, so these results are under {layout.version_stem(stem, document['source_version_id'])}.*)"
        )
    return _cut(text, MAX_SUMMARY_CHARS - len(note)) + note


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _count(count: int, noun: str) -> str:
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


def _ranges(indexes: list[int]) -> list[list[int]]:
    """Sorted indexes as inclusive [first, last] runs: [0, 1, 2, 5] -> [[0, 2], [5, 5]]."""
    runs: list[list[int]] = []
    for index in indexes:
        if runs and index == runs[-1][1] + 1:
            runs[-1][1] = index
        else:
            runs.append([index, index])
    return runs


def _ranges_text(indexes: list[int], shown: int = 10) -> str:
    runs = [f"{first}-{last}" if last > first else str(first) for first, last in _ranges(indexes)]
    return ", ".join(runs[:shown]) + (", ..." if len(runs) > shown else "")
