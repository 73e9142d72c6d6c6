"""The object writer the batch steps stream their parts and outputs through: S3 multipart uploads (on moto) and the
in-memory fake honour one contract — what is written, in order, becomes one object version when closed, another
object's content can be appended (copied by S3 itself when its rules allow), and nothing is visible before."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from infra.local.cloud import LocalCloud
from loopml_core.adapters.object_store import InMemoryObjectStore, ObjectStore, S3ObjectStore
from loopml_core.adapters.object_writer import (
    MIN_PART_BYTES,
    PART_BYTES,
    InMemoryObjectWriters,
    ObjectWriters,
    S3ObjectWriters,
)
from loopml_core.errors import NotFoundError

pytestmark = pytest.mark.xdist_group("local-cloud")  # moto is process-global: one local cloud per worker at a time


@pytest.fixture(params=["s3", "memory"])
def backend(request: pytest.FixtureRequest, cloud: LocalCloud) -> Iterator[tuple[ObjectStore, ObjectWriters, str]]:
    if request.param == "s3":
        client = cloud.client("s3")
        yield S3ObjectStore(client), S3ObjectWriters(client), cloud.names.artifact_bucket
    else:
        store = InMemoryObjectStore()
        yield store, InMemoryObjectWriters(store), "bucket"


def test_a_small_object_is_one_put_and_appears_only_when_closed(backend) -> None:
    store, writers, bucket = backend
    writer = writers.open(bucket, "writer/small.txt", "text/plain")
    writer.write(b"hello, ")
    writer.write(memoryview(b"world"))
    with pytest.raises(NotFoundError):
        store.get(bucket, "writer/small.txt")
    writer.close()
    assert store.get(bucket, "writer/small.txt", writer.stored.version_id) == b"hello, world"
    writer.close()  # closing again changes nothing
    assert store.get(bucket, "writer/small.txt") == b"hello, world"


def test_parts_and_appended_objects_join_in_order(backend) -> None:
    # Given an object of two parts' size, a small one and a large one to append
    store, writers, bucket = backend
    large, small = os.urandom(MIN_PART_BYTES + 1000), b"small tail\n"
    store.put(bucket, "writer/large.bin", large)
    store.put(bucket, "writer/small.bin", small)
    streamed = os.urandom(PART_BYTES + 12345)
    copies: list[str] = []
    if isinstance(writers, S3ObjectWriters):
        writers.client.meta.events.register(
            "provide-client-params.s3.UploadPartCopy", lambda params, **_: copies.append(params["CopySource"]["Key"])
        )
    # When they are written and appended in turn
    writer = writers.open(bucket, "writer/joined.bin")
    writer.append_object(bucket, "writer/large.bin")  # copied whole: at the start, over S3's minimum part
    writer.write(streamed)  # sent in parts as the buffer fills
    writer.append_object(bucket, "writer/small.bin")  # under the minimum: streamed through
    writer.append_object(bucket, "writer/large.bin")  # after a buffered tail: streamed too
    writer.close()
    # Then the object holds all of it, in order, and reads back checksum-valid
    assert store.get(bucket, "writer/joined.bin", writer.stored.version_id) == large + streamed + small + large
    if isinstance(writers, S3ObjectWriters):
        assert copies == ["writer/large.bin"]  # the first one only: S3 copied it, nothing passed through here


def test_a_parquet_writer_streams_row_groups_through_it(backend) -> None:
    store, writers, bucket = backend
    table = pa.table({"x": list(range(300_000)), "y": [str(i % 7) for i in range(300_000)]})
    writer = writers.open(bucket, "writer/table.parquet")
    with pq.ParquetWriter(writer, table.schema) as parquet:
        for batch in table.to_batches(max_chunksize=100_000):
            parquet.write_batch(batch)
    writer.close()
    read = pq.read_table(io.BytesIO(store.get(bucket, "writer/table.parquet")))
    assert (
        read.equals(table) and pq.ParquetFile(io.BytesIO(store.get(bucket, "writer/table.parquet"))).num_row_groups == 3
    )
