"""Capture lines (what the predict function emits) and the local stand-in for Firehose that batches them."""

from __future__ import annotations

import gzip
import json

import pytest

from infra import declaration as decl
from infra.local.delivery import FirehoseS3Delivery, jq_partition_fields, matches_filter, render_prefix
from loopml_core.capture import (
    CAPTURE_MARKER,
    MAX_LINE_BYTES,
    ListSink,
    LogStreamSink,
    capture_lines,
    columnar_capture_lines,
    sampled,
)

RECORDS = [{"tenure": 3, "plan": "pro"}, {"tenure": 40, "plan": "basic"}]
OUTPUTS = [
    {"label": "yes", "probabilities": {"no": 0.2, "yes": 0.8}},
    {"label": "no", "probabilities": {"no": 0.9, "yes": 0.1}},
]


def lines(**overrides):
    arguments = {
        "model": "churn",
        "version": 3,
        "retention": "30d",
        "request_id": "req-1",
        "at": "2026-11-24T10:00:00.000000Z",
        "features": ["tenure", "plan"],
        "records": RECORDS,
        "outputs": OUTPUTS,
        "classes": ["no", "yes"],
    } | overrides
    return [json.loads(line) for line in capture_lines(**arguments)]


def test_a_request_is_one_columnar_line():
    [line] = lines()
    assert next(iter(line)) == CAPTURE_MARKER
    assert line["features"] == {"tenure": [3, 40], "plan": ["pro", "basic"]}
    assert line["prediction"] == ["yes", "no"] and line["probabilities"] == [[0.2, 0.8], [0.9, 0.1]]
    assert (line["first"], line["n"], line["request_id"], line["retention"]) == (0, 2, "req-1", "30d")


def test_regression_lines_carry_values_only():
    [line] = lines(outputs=[{"value": 1.5}, {"value": -2.0}], classes=None)
    assert line["prediction"] == [1.5, -2.0] and "probabilities" not in line and "classes" not in line


def test_a_request_too_large_for_a_log_event_is_split_with_each_lines_first_index():
    wide = [{"tenure": i, "plan": "x" * 2_000} for i in range(300)]
    outputs = [{"value": float(i)} for i in range(300)]
    texts = list(
        capture_lines(
            model="m",
            version=1,
            retention="7d",
            request_id="r",
            at="t",
            features=["tenure", "plan"],
            records=wide,
            outputs=outputs,
            classes=None,
        )
    )
    assert len(texts) > 1 and all(len(text) <= MAX_LINE_BYTES for text in texts)
    parsed = [json.loads(text) for text in texts]
    assert [p["first"] for p in parsed] == [sum(q["n"] for q in parsed[:i]) for i in range(len(parsed))]
    assert [v for p in parsed for v in p["features"]["tenure"]] == list(range(300))


def columnar(**overrides):
    arguments = {
        "model": "churn",
        "version": 3,
        "retention": "30d",
        "request_id": "req-1",
        "at": "t",
        "features": {"tenure": (3, 40), "plan": ("pro", "basic")},
        "prediction": ["yes", "no"],
        "classes": ["no", "yes"],
        "probabilities": [[0.2, 0.8], [0.9, 0.1]],
    } | overrides
    return list(columnar_capture_lines(**arguments))


def test_columnar_lines_are_written_from_the_validated_columns_as_they_were_sent():
    [line] = columnar()
    assert isinstance(line, bytes)
    document = json.loads(line)
    assert document == lines()[0] | {"at": "t"}
    [with_nulls] = columnar(features={"tenure": (3, None), "plan": (None, "basic")})
    assert json.loads(with_nulls)["features"] == {"tenure": [3, None], "plan": [None, "basic"]}


def test_a_thousand_wide_records_are_cut_into_few_lines_that_each_fit_a_log_event():
    # Given a request of 1000 records of 20 features, too large for one log event
    count = 1000
    features = {f"f{i}": tuple(1234.5678 + j for j in range(count)) for i in range(20)}
    prediction = ["yes"] * count
    # When it is captured
    texts = columnar(features=features, prediction=prediction, probabilities=[[0.25, 0.75]] * count)
    # Then every line fits, the lines follow each other, and they are few (sized from a sample, not halved)
    parsed = [json.loads(text) for text in texts]
    assert all(len(text) <= MAX_LINE_BYTES for text in texts)
    assert [p["first"] for p in parsed] == [sum(q["n"] for q in parsed[:i]) for i in range(len(parsed))]
    assert sum(p["n"] for p in parsed) == count and len(texts) <= 3
    assert [v for p in parsed for v in p["features"]["f7"]] == list(features["f7"])


def test_the_line_limit_counts_utf8_bytes_not_characters():
    wide = ("é" * 900,) * 300  # 1800 bytes per value in UTF-8, 900 characters
    texts = columnar(features={"plan": wide}, prediction=["no"] * 300, probabilities=[[0.5, 0.5]] * 300)
    assert len(texts) > 1 and all(len(text) <= MAX_LINE_BYTES for text in texts)


def test_the_log_stream_sink_writes_byte_lines_whole_and_in_order(capfdbinary):
    # Given stdout as a Lambda function has it (a file descriptor), something printed before the capture line
    print("before", flush=False)
    # When byte lines and a text line are emitted
    LogStreamSink().emit([b'{"loopml_capture":1}', '{"loopml_capture":2}'])
    print("after")
    # Then each is one line, in order, flushed
    assert capfdbinary.readouterr().out.splitlines() == [
        b"before",
        b'{"loopml_capture":1}',
        b'{"loopml_capture":2}',
        b"after",
    ]


def test_a_sink_given_a_text_writer_gets_text():
    written: list[str] = []
    LogStreamSink(written.append).emit([b"{}", "{}"])
    assert written == ["{}\n", "{}\n"]


def test_sampling_follows_the_rate():
    assert sampled(1.0, draw=lambda: 0.999)
    assert sampled(0.25, draw=lambda: 0.2) and not sampled(0.25, draw=lambda: 0.3)
    sink = ListSink()
    sink.emit(
        capture_lines(
            **{
                "model": "m",
                "version": 1,
                "retention": "7d",
                "request_id": "r",
                "at": "t",
                "features": ["tenure"],
                "records": [{"tenure": 1}],
                "outputs": [{"value": 0.0}],
                "classes": None,
            }
        )
    )
    assert sink.documents()[0]["features"] == {"tenure": [1]}


# --- the local Firehose ------------------------------------------------------------------------------------------


def test_filter_patterns_match_terms_as_cloudwatch_logs_does():
    assert matches_filter('"loopml_capture"', '{"loopml_capture":1}')
    assert not matches_filter('"loopml_capture"', '{"level":"INFO","message":"served"}')
    assert matches_filter("", "anything") and matches_filter("ERROR timeout", "ERROR: a timeout")
    with pytest.raises(NotImplementedError):
        matches_filter("{ $.level = 1 }", "{}")


def test_prefix_expressions_and_jq_keys_are_evaluated():
    spec = decl.CAPTURE_DELIVERY
    assert jq_partition_fields(spec.partition_query) == {"retention": "retention", "model": "model"}
    at = 1_795_000_000.0  # 2026-11-18T11:06:40Z
    assert (
        render_prefix(spec.s3_prefix, {"retention": "7d", "model": "churn"}, at) == "captures/7d/churn/2026/11/18/11/"
    )
    assert render_prefix(spec.s3_error_prefix, {}, at, "partitioning-failed") == (
        "capture-errors/partitioning-failed/2026/11/18/"
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1_795_000_000.0

    def __call__(self) -> float:
        return self.now


def delivery_with(buffer_mb: int = 64, buffer_s: int = 300):
    written: dict[str, bytes] = {}
    clock = Clock()
    delivery = FirehoseS3Delivery(lambda bucket, key, data: written.__setitem__(f"{bucket}/{key}", data), clock)
    spec = decl.CAPTURE_DELIVERY
    config = decl.capture_destination(spec, "arn:aws:s3:::artifacts", "arn:aws:iam::1:role/r")
    config["BufferingHints"] = {"SizeInMBs": buffer_mb, "IntervalInSeconds": buffer_s}
    return delivery, config, written, clock


def message(model: str, n: int = 1) -> str:
    return json.dumps({CAPTURE_MARKER: 1, "model": model, "retention": "30d", "n": n})


def test_partitions_are_buffered_apart_and_written_gzipped_on_flush():
    delivery, config, written, _ = delivery_with()
    assert delivery.handles(config)
    delivery.receive("loopml-captures", "1", config, [message("churn"), message("loans"), message("churn", 2)])
    assert written == {}
    assert delivery.flush() == 2
    by_model = {key.split("/")[3]: gzip.decompress(data).decode() for key, data in written.items()}
    assert by_model["churn"].splitlines() == [message("churn"), message("churn", 2)]
    assert by_model["loans"].endswith("\n") and all(key.endswith(".gz") for key in written)


def test_a_full_buffer_or_an_elapsed_interval_delivers_without_a_flush():
    delivery, config, written, clock = delivery_with(buffer_mb=1, buffer_s=60)
    big = json.dumps({CAPTURE_MARKER: 1, "model": "churn", "retention": "30d", "pad": "x" * (1 << 20)})
    delivery.receive("s", "1", config, [big])
    assert len(written) == 1  # over 1 MB
    delivery.receive("s", "1", config, [message("loans")])
    clock.now += 61
    delivery.receive("s", "1", config, [message("other")])
    assert len(written) == 2 and any("/loans/" in key for key in written)  # the minute-old buffer went


def test_a_record_without_its_partition_keys_goes_to_the_error_prefix():
    delivery, config, written, _ = delivery_with()
    delivery.receive("s", "1", config, ["not json", json.dumps({"model": "churn"})])
    assert len(written) == 2 and all("/capture-errors/partitioning-failed/" in key for key in written)
