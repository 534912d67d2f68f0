"""Ids as the lake spells them: a letter and a zero-padded number (`c00000001`, `s0001`, `o0000000001`)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def customer_id_width(customers: int) -> int:
    # Room for the numbers of the invalid extra customers (customers + 1 .. customers + 10).
    return max(8, len(str(customers + 20)))


def store_id_width(stores: int) -> int:
    # Room for the numbers of the unknown stores that dirty orders point at (up to stores + 249).
    return max(4, len(str(stores + 1000)))


def order_id_width(orders: int) -> int:
    return max(10, len(str(orders)))


def format_ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """`prefix` + zero-padded decimal numbers, vectorised through Arrow (no Python loop per row)."""
    digits = pa.array(numbers.astype(np.int64), type=pa.int64()).cast(pa.string())
    padded = pc.utf8_lpad(digits, width=width, padding="0")
    return pc.binary_join_element_wise(prefix, padded, "")
