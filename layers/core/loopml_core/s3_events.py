"""The objects an S3 event notification names, as every S3-triggered function reads them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import unquote_plus

from loopml_core.logic.ingest import Upload

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.parser.models import S3Model


def uploaded_objects(event: S3Model) -> Iterator[Upload]:
    """Each object the event's records name (their keys URL-decoded, as S3 sends them encoded); records without an
    object (a test event, say) are skipped."""
    for record in event.Records:
        if record.s3.object is not None:
            yield Upload(record.s3.bucket.name, unquote_plus(record.s3.object.key), record.s3.object.versionId)
