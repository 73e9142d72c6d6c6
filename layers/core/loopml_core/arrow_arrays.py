"""Arrow arrays as numpy, by their buffers.

`Array.to_numpy` and `pa.array` on Python values go through pyarrow's pandas bridge where pandas is installed (it
imports pandas: 130 ms, 40 MB), and the layers that read Arrow ship no pandas; these read and build buffers directly.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def arrow_indices(rows: np.ndarray) -> Any:
    """Row positions as an Arrow int64 array over the same memory (`pa.array` would import pandas to convert)."""
    import pyarrow as pa

    positions = np.ascontiguousarray(rows, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(positions), [None, pa.py_buffer(positions)])


def float_values(array: Any) -> np.ndarray:
    """A float64 Arrow array as numpy, with NaN for nulls: a read-only view of its buffer when it has no nulls.

    Read from the data buffer directly: `Array.to_numpy` with nulls goes through pyarrow's pandas bridge, which
    imports pandas where it is installed.
    """
    values = np.frombuffer(array.buffers()[1], dtype=np.float64, count=len(array), offset=array.offset * 8)
    if array.null_count:
        values = values.copy()
        values[~valid_mask(array)] = np.nan
    return values


def bool_mask(array: Any) -> np.ndarray:
    """A boolean Arrow array as a numpy bool array, null as False, unpacking bits rather than boxing values."""
    n = len(array)
    bits = np.unpackbits(np.frombuffer(array.buffers()[1], np.uint8), bitorder="little", count=array.offset + n)
    mask = bits[array.offset :].view(bool)
    if array.null_count:
        mask = mask & valid_mask(array)
    return mask


def valid_mask(array: Any) -> np.ndarray:
    """Which entries of an Arrow array are not null."""
    n = len(array)
    if not array.null_count:
        return np.ones(n, dtype=bool)
    bits = np.unpackbits(np.frombuffer(array.buffers()[0], np.uint8), bitorder="little", count=array.offset + n)
    return bits[array.offset :].view(bool)


def arrow_mask(mask: np.ndarray) -> Any:
    """A numpy bool array as an Arrow boolean array (for `filter`), packed into its bitmap."""
    import pyarrow as pa

    bits = np.packbits(np.ascontiguousarray(mask, dtype=bool), bitorder="little")
    return pa.Array.from_buffers(pa.bool_(), len(mask), [None, pa.py_buffer(bits)])


def dictionary_codes(array: Any) -> tuple[list[str], np.ndarray]:
    """A text-like Arrow column as its distinct words (stripped) and one int64 code per entry into them, -1 for a null.

    A column that is not dictionary-encoded yet is encoded first; one that is not text (an integer-coded Parquet
    column, say) is read as text: 1 reads as "1".
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if not pa.types.is_dictionary(array.type):
        if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
            array = pc.cast(array, pa.string())
        array = pc.dictionary_encode(array)
    words = [str(word).strip() for word in array.dictionary.to_pylist()]
    indices = array.indices
    width = indices.type.bit_width  # dictionary indices are signed integers
    codes = np.frombuffer(indices.buffers()[1], np.dtype(f"int{width}"), len(indices), indices.offset * width // 8)
    codes = codes.astype(np.int64)
    if indices.null_count:
        codes[~valid_mask(indices)] = -1
    return words, codes
