"""Where batch files, their work files and their results live, and what they are tagged with.

Pure and dependency-free: the start function (core layer only), the three steps and the CLI share it.

    data bucket      batch/<model>/input/<name>                 what a user uploads (CSV or Parquet)
                     batch/<model>/output/<stem>.<csv|parquet>  every input row (or the id column) + predictions
                     batch/<model>/output/<stem>.report.json    the rows and columns at fault, the outcome
                     batch/<model>/output/<stem>.<version>.*    the same, of an input version a newer upload of the
                                                                same name superseded before its batch ended
    artifact bucket  batch-work/<model>/<execution>/plan.json      what the plan decided (model version, chunks)
                     batch-work/<model>/<execution>/manifest.json  the chunks, a JSON array the Distributed Map reads
                     batch-work/<model>/<execution>/parts/<i>.*    each chunk's scored rows and its findings
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import PurePosixPath

from loopml_core.uploads import Format, format_of

BATCH = "batch/"
INPUT = "input/"
OUTPUT = "output/"
WORK = "batch-work/"  # in the artifact bucket; expired by a declared lifecycle rule

STATUS_TAG = "loopml-batch-status"  # on the input object version: the batch's outcome
VERSION_TAG = "loopml-batch-model-version"  # on the input object version: the model version that scored it
ID_COLUMN_TAG = "loopml-id-column"  # set by the uploader: keep only this input column beside the predictions

PREDICTION = "prediction"
PROBABILITY_PREFIX = "probability_"
MODEL_VERSION = "model_version"

EXECUTION_NAME_LIMIT = 80  # Step Functions' limit


class BatchStatus(StrEnum):
    SCORED = "scored"  # the output holds every parsed row; rows the contract refuses have empty predictions
    REFUSED = "refused"  # nothing scored: no champion, an unsupported format, missing columns, an unreadable file
    FAILED = "failed"  # a step crashed after its retries: nothing written but the report
    ERROR = "error"  # the batch could not even be started (batch_start failed on every attempt): no report


@dataclass(frozen=True)
class BatchInput:
    """One uploaded object version under `batch/<model>/input/`."""

    bucket: str
    key: str
    version_id: str | None
    model: str
    name: str  # the key after `input/` (it may hold folders)

    @property
    def format(self) -> Format | None:
        return format_of(self.name)

    @property
    def stem(self) -> str:
        """The name without its format suffix (or without its last suffix, for a format LoopML does not read)."""
        fmt = self.format
        if fmt is not None:
            return self.name[: -len(fmt.suffix)]
        path = PurePosixPath(self.name)
        return str(path.with_suffix("")) if path.suffix else self.name

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def batch_input(bucket: str, key: str, version_id: str | None) -> BatchInput | None:
    """The batch input a key names (`batch/<model>/input/<name>`), or None for any other key, such as an output."""
    parts = key.split("/", 3)
    if len(parts) != 4 or f"{parts[0]}/" != BATCH or f"{parts[2]}/" != INPUT or not parts[1] or not parts[3]:
        return None
    if parts[3].endswith("/"):  # a "folder" placeholder object, not a file
        return None
    return BatchInput(bucket, key, version_id, parts[1], parts[3])


def execution_name(model: str, key: str, version_id: str | None) -> str:
    """One execution per object version: a redelivered S3 event starts nothing new (Step Functions returns the
    execution of that name and input instead of starting another)."""
    digest = hashlib.sha256(f"{key}@{version_id or 'null'}".encode()).hexdigest()[:32]
    prefix = re.sub(r"[^A-Za-z0-9_-]", "-", model)[: EXECUTION_NAME_LIMIT - len(digest) - 1]
    return f"{prefix}-{digest}"


def work_prefix(model: str, execution: str) -> str:
    return f"{WORK}{model}/{execution}/"


def plan_key(work: str) -> str:
    return f"{work}plan.json"


def manifest_key(work: str) -> str:
    return f"{work}manifest.json"


def parts_prefix(work: str) -> str:
    return f"{work}parts/"


def part_key(work: str, index: int, extension: str) -> str:
    return f"{parts_prefix(work)}{index:06d}.{extension}"


def summary_key(work: str, index: int) -> str:
    return f"{parts_prefix(work)}{index:06d}.json"


def output_key(model: str, stem: str, extension: str) -> str:
    return f"{BATCH}{model}/{OUTPUT}{stem}.{extension}"


def report_key(model: str, stem: str) -> str:
    return f"{BATCH}{model}/{OUTPUT}{stem}.report.json"


def version_stem(stem: str, version_id: str) -> str:
    """The stem of a superseded input version's results (`<stem>.<input version id>`): a newer upload of the same
    name owns `<stem>.*`, so an older version's batch that ends later writes beside it, never over it."""
    return f"{stem}.{version_id}"


def prediction_columns(classes: list[str] | None) -> list[str]:
    """The columns appended to every row: the prediction, one probability per class (classifiers), the version."""
    probabilities = [f"{PROBABILITY_PREFIX}{label}" for label in classes or ()]
    return [PREDICTION, *probabilities, MODEL_VERSION]
