"""Overlapping token sequences that keep their mapping back to event rows, and the chronological
split that stands in for earlier days when a single day of data is all there is.

A sequence is a window of ``seq_len`` consecutive events starting every ``stride`` events; when
the day does not end on a window boundary one more window is aligned to the last event, so no
event is left out. A day shorter than ``seq_len`` gives no sequence (reported, not padded).
Each sequence records its first and last event row, source line and time, and the split of its
last event: the event a model predicts decides which part of the day the sample belongs to.
"""

from __future__ import annotations

import numpy as np
import polars as pl


SEQ_LEN = 256
STRIDE = 128


def window_starts(n_events: int, seq_len: int = SEQ_LEN, stride: int = STRIDE) -> np.ndarray:
    """First event row of every window (module docstring)."""
    if seq_len < 1 or stride < 1:
        raise ValueError(f"seq_len and stride must be positive, got {seq_len} and {stride}")
    if n_events < seq_len:
        return np.zeros(0, dtype=np.int64)
    starts = np.arange(0, n_events - seq_len + 1, stride)
    if starts[-1] != n_events - seq_len:
        starts = np.append(starts, n_events - seq_len)
    return starts


def token_sequences(tokens: pl.DataFrame, split: pl.Series, seq_len: int = SEQ_LEN, stride: int = STRIDE) -> pl.DataFrame:
    """One row per sequence of ``tokens`` (one row per event, in event order)."""
    starts = window_starts(tokens.height, seq_len, stride)
    ends = starts + seq_len - 1
    return pl.DataFrame({
        "sequence": np.arange(len(starts), dtype=np.uint32),
        "first_event_row": starts.astype(np.uint32),
        "last_event_row": ends.astype(np.uint32),
        "first_source_row": tokens["source_row"].gather(starts),
        "last_source_row": tokens["source_row"].gather(ends),
        "first_ts_ns": tokens["ts_ns"].gather(starts),
        "last_ts_ns": tokens["ts_ns"].gather(ends),
        "split": split.gather(ends),
    })


def sequence_array(tokens: pl.DataFrame, sequences: pl.DataFrame, columns: list[str]) -> np.ndarray:
    """(sequences, seq_len, columns) array of token ids, for a model's data loader."""
    values = tokens.select(columns).to_numpy()
    starts = sequences["first_event_row"].to_numpy().astype(np.int64)
    length = int(sequences["last_event_row"][0] - starts[0] + 1) if len(starts) else 0
    return values[starts[:, None] + np.arange(length)[None, :]]
