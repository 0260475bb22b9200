"""Token losses of a LossMatrix: every scored token's NLL (nats) and the UTF-8 byte span of the text it covers.

For every (model, text) the spans partition the text's bytes in order (the rule is mmc.segments': only a
token's byte_end is kept, and it starts where the token before it ended) and the token NLLs sum to the
text's NLL in the LossMatrix. Per-token data stay on disk until asked for, one model at a time: in the
score cache (mmc.scoring.cache), or in a run's `token_losses.parquet` (columns model, text_id, token,
byte_start, byte_end, nll; one row group per model, read back with a filter on `model`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np

from mmc.errors import MMCError

COLUMNS = ("model", "text_id", "token", "byte_start", "byte_end", "nll")
Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]  # offsets int64 (N+1,), byte_end int64 (T,), nll float64 (T,)


@dataclass
class TokenLosses:
    """Per-token NLL (nats) and byte spans of every (model, text) of a LossMatrix, read one model at a time."""

    models: np.ndarray  # str (M,), the LossMatrix's order
    text_ids: np.ndarray  # str (N,), the LossMatrix's order
    loaders: list[Callable[[], Arrays]] = field(repr=False)  # one per model: reads its arrays from disk

    def __post_init__(self):
        self.models = np.asarray(self.models, dtype=str)
        self.text_ids = np.asarray(self.text_ids, dtype=str)
        if len(self.loaders) != len(self.models):
            raise ValueError(f"{len(self.loaders)} loaders for {len(self.models)} models")

    def model(self, i: int) -> Arrays:
        """(offsets int64 (N+1,), byte_end int64 (T,), nll float64 (T,)) of model i: text n's tokens are
        [offsets[n], offsets[n+1]); byte_start of a token is the previous token's byte_end (0 for a text's first)."""
        return self.loaders[i]()

    def select_models(self, index) -> "TokenLosses":
        index = np.asarray(index, dtype=np.int64)
        return TokenLosses(self.models[index], self.text_ids, [self.loaders[i] for i in index])

    def to_parquet(self, path) -> None:
        """The token_losses.parquet artifact: a row per (model, text, token), a row group per model."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        text_ids = pa.array(self.text_ids)
        schema = pa.schema([("model", pa.dictionary(pa.int32(), pa.string())),
                            ("text_id", pa.dictionary(pa.int32(), pa.string())), ("token", pa.int32()),
                            ("byte_start", pa.int64()), ("byte_end", pa.int64()), ("nll", pa.float64())])
        with pq.ParquetWriter(str(path), schema) as writer:
            for i, name in enumerate(self.models):
                offsets, byte_end, nll = self.model(i)
                lengths = np.diff(offsets)
                first = np.repeat(offsets[:-1], lengths)  # of each row's text
                position = np.arange(len(nll)) - first
                byte_start = np.where(position == 0, 0, np.roll(byte_end, 1))
                text = np.repeat(np.arange(len(lengths), dtype=np.int32), lengths)
                columns = [pa.DictionaryArray.from_arrays(pa.array(np.zeros(len(nll), dtype=np.int32)), pa.array([name])),
                           pa.DictionaryArray.from_arrays(pa.array(text), text_ids), pa.array(position.astype(np.int32)),
                           pa.array(byte_start), pa.array(byte_end), pa.array(nll)]
                writer.write_table(pa.Table.from_arrays(columns, schema=schema))

    @classmethod
    def from_parquet(cls, path, models, text_ids) -> "TokenLosses":
        """The token losses of `models` on `text_ids` in an earlier run's token_losses.parquet (checked now for
        its columns and models, each model's rows when it is read)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = Path(path)
        if not path.is_file():
            raise MMCError(f"token losses file {path} does not exist; pass the token_losses.parquet of an mmc run")
        try:
            names = pq.ParquetFile(path).schema_arrow.names
            present = set(pq.read_table(path, columns=["model"])["model"].unique().cast(pa.string()).to_pylist()) \
                if "model" in names else set()
        except (pa.ArrowException, OSError) as e:
            raise MMCError(f"{path} is not a readable parquet file ({str(e).splitlines()[0]}); "
                           "pass the token_losses.parquet of an mmc run") from e
        missing_columns = [c for c in COLUMNS if c not in names]
        if missing_columns:
            raise MMCError(f"{path} lacks columns {missing_columns}; it is not an mmc token_losses.parquet")
        models = np.asarray(models, dtype=str)
        absent = [m for m in models.tolist() if m not in present]
        if absent:
            raise MMCError(f"{path} has no token losses of models {absent[:5]}; score them with scoring.token_losses=true")
        text_ids = np.asarray(text_ids, dtype=str)
        return cls(models, text_ids, [partial(_read_model, path, name, text_ids) for name in models.tolist()])


def _read_model(path: Path, name: str, text_ids: np.ndarray) -> Arrays:
    """One model's rows of a token_losses.parquet, in text_ids' order, checked to partition every text's bytes."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=list(COLUMNS[1:]), filters=[("model", "==", name)])
    text = pc.index_in(table["text_id"].cast(pa.string()), value_set=pa.array(text_ids)).to_numpy(zero_copy_only=False)
    kept = ~np.isnan(text.astype(np.float64))  # rows of other texts are not this matrix's
    text = text[kept].astype(np.int64)
    token, byte_start, byte_end, nll = (table[c].to_numpy()[kept] for c in ("token", "byte_start", "byte_end", "nll"))
    order = np.lexsort((token, text))
    text, token, byte_start, byte_end, nll = (a[order] for a in (text, token, byte_start, byte_end, nll))
    lengths = np.bincount(text, minlength=len(text_ids))
    if (lengths == 0).any():
        raise MMCError(f"{path} has no tokens of model {name!r} on text {str(text_ids[np.argmax(lengths == 0)])!r}; "
                       "it belongs to another corpus")
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    first = np.repeat(offsets[:-1], lengths)
    previous_end = np.where(np.arange(len(text)) == first, 0, np.roll(byte_end, 1))
    bad = (token != np.arange(len(text)) - first) | (byte_start != previous_end) | (byte_end < byte_start)
    if bad.any():
        raise MMCError(f"{path}: the tokens of model {name!r} on text {str(text_ids[text[np.argmax(bad)]])!r} do not "
                       "partition its bytes in order; the file is damaged")
    return offsets, byte_end.astype(np.int64), nll.astype(np.float64)
