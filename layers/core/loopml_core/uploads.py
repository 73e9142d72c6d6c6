"""Where uploads land, how their outcome is tagged, and which formats they may have (told from the name, checked
against the first bytes).

Pure and dependency-free: the validation function and the on-failure function (which has no data layer) share it.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import PurePosixPath

INCOMING = "incoming/"
LABELS = "labels/"  # labels/<model>/<file>.csv: ground truth for served predictions
# In the artifact bucket: labels whose predictions had not reached S3 yet, which each check tries to match again.
PENDING_LABELS = "labels-pending/"
QUARANTINE = "quarantine/"
DATASETS = "datasets/"
STATUS_TAG = "loopml-status"  # the upload's outcome, on the uploaded object version

GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"
SNIFF_BYTES = 4  # the most any magic number above needs


def source_id(key: str, version_id: str | None) -> str:
    """`<key>@<version id>`: how the registry names one uploaded object version (`null` in an unversioned bucket)."""
    return f"{key}@{version_id or 'null'}"


def dataset_of(key: str) -> str | None:
    """`incoming/<dataset>/<file>` (or a label file, `labels/<model>/<file>`: a model bears its dataset's name) -> the
    dataset; any other key names none."""
    parts = PurePosixPath(key).parts
    if len(parts) == 3 and key.startswith((INCOMING, LABELS)):
        return parts[1]
    return None


class Format(StrEnum):
    CSV = "csv"
    CSV_GZ = "csv.gz"
    PARQUET = "parquet"

    @property
    def suffix(self) -> str:
        return f".{self.value}"


SUPPORTED = ", ".join(f.suffix for f in Format)


class FormatError(ValueError):
    """The object cannot be read as the format its name says; the message says why and what to do."""


def format_of(name: str) -> Format | None:
    """The format a file name declares (case-insensitive suffix), or None when it declares none LoopML reads."""
    lowered = name.lower()
    for fmt in sorted(Format, key=lambda f: -len(f.value)):  # .csv.gz before .csv
        if lowered.endswith(fmt.suffix):
            return fmt
    return None


def sniff(head: bytes) -> Format | None:
    """What the first bytes say the content is: gzip, Parquet, or (None) anything else, such as CSV text."""
    if head.startswith(GZIP_MAGIC):
        return Format.CSV_GZ
    if head.startswith(PARQUET_MAGIC):
        return Format.PARQUET
    return None


def check_content(name: str, declared: Format, head: bytes) -> None:
    """Raise `FormatError` when the content's first bytes contradict the format the name declares."""
    actual = sniff(head)
    if declared is Format.CSV and actual is Format.CSV_GZ:
        raise FormatError(f"'{name}' is gzip-compressed but named .csv; name it .csv.gz")
    if declared is Format.CSV and actual is Format.PARQUET:
        raise FormatError(f"'{name}' is a Parquet file named .csv; name it .parquet")
    if declared is Format.CSV_GZ and actual is not Format.CSV_GZ:
        raise FormatError(f"'{name}' is named .csv.gz but is not gzip-compressed; name it for what it holds")
    if declared is Format.PARQUET and actual is not Format.PARQUET:
        what = "gzip-compressed data" if actual is Format.CSV_GZ else "not Parquet (it does not start with PAR1)"
        raise FormatError(f"'{name}' is named .parquet but is {what}")
