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
