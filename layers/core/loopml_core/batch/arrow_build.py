"""Arrow arrays and scalars built from their buffers.

`pa.array` and `pa.scalar` on numpy or Python values go through pyarrow's pandas bridge where pandas is installed
(130 ms and 40 MB to import it), and no layer that reads Arrow ships pandas: these never touch it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

_TYPES = {
    np.dtype(np.float64): "float64",
    np.dtype(np.float32): "float32",
    np.dtype(np.int64): "int64",
    np.dtype(np.int32): "int32",
}


def _validity(valid: np.ndarray | None) -> Any:
    import pyarrow as pa

    if valid is None or bool(valid.all()):
        return None
    return pa.py_buffer(np.packbits(np.ascontiguousarray(valid, dtype=bool), bitorder="little"))


def numeric_array(values: np.ndarray, valid: np.ndarray | None = None) -> Any:
    """A float64, float32, int64 or int32 numpy array as an Arrow array; null where `valid` is False."""
    import pyarrow as pa

    values = np.ascontiguousarray(values)
    kind = getattr(pa, _TYPES[values.dtype])()
    return pa.Array.from_buffers(kind, len(values), [_validity(valid), pa.py_buffer(values)], null_count=-1)


def string_array(values: Sequence[str]) -> Any:
    """Python strings as an Arrow string array."""
    import pyarrow as pa

    encoded = [value.encode() for value in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
    np.cumsum([len(item) for item in encoded], out=offsets[1:])
    return pa.Array.from_buffers(
        pa.string(), len(encoded), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))]
    )


def string_scalar(value: str) -> Any:
    return string_array([value])[0]


def binary_view(data: bytes | memoryview, offsets: np.ndarray) -> Any:
    """A binary array over `data` without copying it: value `i` is `data[offsets[i]:offsets[i + 1]]`."""
    import pyarrow as pa

    positions = np.ascontiguousarray(offsets, dtype=np.int32)  # a segment is far below 2 GB
    return pa.Array.from_buffers(pa.binary(), len(positions) - 1, [None, pa.py_buffer(positions), pa.py_buffer(data)])


def labels_array(codes: np.ndarray, valid: np.ndarray, labels: Sequence[str]) -> Any:
    """Per row `labels[codes[i]]` as a string array, null where `valid` is False."""
    import pyarrow as pa

    indices = numeric_array(np.ascontiguousarray(codes, dtype=np.int32), valid)
    return pa.DictionaryArray.from_arrays(indices, string_array(labels)).cast(pa.string())


def joined_bytes(array: Any) -> memoryview:
    """The values of a (large) binary or string array without nulls, concatenated: a view of its data buffer."""
    offsets_dtype = np.int64 if array.type in _large_types() else np.int32
    width = np.dtype(offsets_dtype).itemsize
    offsets = np.frombuffer(array.buffers()[1], offsets_dtype, len(array) + 1, array.offset * width)
    data = array.buffers()[2]
    if data is None:
        return memoryview(b"")
    return memoryview(data)[int(offsets[0]) : int(offsets[-1])]


def _large_types() -> tuple[Any, ...]:
    import pyarrow as pa

    return (pa.large_binary(), pa.large_string())
