"""Content-addressed cache of per-text scores: a text is never scored twice by the same model and settings.

Layout: <root>/<model dir>/<entry>/ holds `meta.json` (the model's record: source, commit, dtype, attention,
parameter counts, library versions) and `chunk-<hash>.npz` files. The model dir hashes what fixes which
tokens are scored with which context: the model's identity (hub id + commit, or local path + hash of all
its files: weights, config and tokenizer), window, stride, prefix token and SCORER_VERSION. The entry
hashes the numerics: the dtype and the attention implementation the model actually runs. Within an entry
a score is keyed by the text's hash.

A chunk holds `hashes`, `nll` (float64), `n_tokens` (int64) and `versions` (the torch, transformers and
tokenizers versions that scored it); with token losses also `token_nll` (float32, every scored token, text
after text) and `token_byte_end` (int32, the end of each token's UTF-8 byte span, mmc.segments). Each file
is written whole to a temp file then renamed: a killed run leaves only complete chunks, and processes
scoring different models never touch the same files. A text in several chunks is read from one with
token losses when there is one, so its total and its tokens always come from the same scoring.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmc.models import ModelSpec, attention_implementation, hub_commit, is_local

SCORER_VERSION = 2  # bump when a change of the engine or of the key layout changes what an entry holds


def text_hashes(texts: list[str]) -> np.ndarray:
    return np.array([hashlib.sha256(t.encode("utf-8")).hexdigest()[:32] for t in texts])


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:32]


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        write(f)
    os.replace(tmp, path)


def _memo(path: Path, compute) -> str:
    """compute() once, kept in `path`."""
    if path.is_file():
        return path.read_text()
    value = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, lambda f: f.write(value.encode()))
    return value


def files_hash(directory: Path, root: Path) -> str:
    """Hash of every file of a model directory (weights, config, tokenizer), memoised by their sizes and mtimes."""
    files = sorted(p for p in directory.rglob("*") if p.is_file() and not p.name.startswith("."))
    stats = [(str(p.relative_to(directory)), p.stat().st_size, p.stat().st_mtime_ns) for p in files]

    def compute() -> str:
        digest = hashlib.sha256()
        for p, (name, *_) in zip(files, stats):
            digest.update(name.encode())
            with open(p, "rb") as f:
                digest.update(hashlib.file_digest(f, "sha256").digest())
        return digest.hexdigest()

    return _memo(root / "files_hash" / _digest([str(directory), stats]), compute)


def model_identity(spec: ModelSpec, root: Path) -> dict:
    """A local model: its path and the hash of its files; a hub model: its id and the commit its revision points
    to. Either fixes the tokenizer too, which is loaded from the same files."""
    if is_local(spec.source):
        path = Path(spec.source).expanduser().resolve()
        return {"path": str(path), "files": files_hash(path, root)}
    return {"hub_id": spec.source, "commit": hub_commit(spec.source, spec.revision)}


def library_versions() -> dict:
    import tokenizers
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "tokenizers": tokenizers.__version__}


def attention(spec: ModelSpec, root: Path, requested: str | None, dtype: str) -> str:
    """mmc.models.attention_implementation, memoised per model identity, request, dtype and library versions."""
    import torch

    key = [model_identity(spec, root), requested, dtype, library_versions()]
    return _memo(root / "attention" / _digest(key),
                 lambda: attention_implementation(spec, requested, getattr(torch, dtype)))


def model_dir(root: Path, identity: dict, window, stride, prefix_token) -> Path:
    """Where a model's scores under these settings live, one entry per dtype and attention implementation."""
    return root / _digest(dict(model=identity, window=window, stride=stride, prefix_token=prefix_token,
                               version=SCORER_VERSION))


def entry_dir(model_dir: Path, dtype: str, attn_implementation: str) -> Path:
    return model_dir / _digest(dict(dtype=dtype, attn_implementation=attn_implementation))


def entries(model_dir: Path) -> list[Path]:
    """The entries of a model dir that have a meta.json, sorted."""
    return sorted(p.parent for p in model_dir.glob("*/meta.json"))


@dataclass
class CachedScores:
    """The records of an entry (one per text and chunk): totals, and where each record's token losses are."""

    hashes: np.ndarray  # str (K,)
    nll: np.ndarray  # float64 (K,)
    n_tokens: np.ndarray  # int64 (K,)
    has_tokens: np.ndarray  # bool (K,)
    chunk: np.ndarray  # int64 (K,): index into paths
    row: np.ndarray  # int64 (K,): the record's row in its chunk
    paths: list[Path]

    def find(self, hashes: np.ndarray) -> np.ndarray:
        """int64 index of each text's record (-1: not cached); records with token losses are preferred."""
        order = np.argsort(self.has_tokens, kind="stable")  # token records last: they win below
        position = {h: int(i) for h, i in zip(self.hashes[order].tolist(), order)}
        return np.array([position.get(h, -1) for h in hashes.tolist()], dtype=np.int64)

    def with_tokens(self, index: np.ndarray) -> np.ndarray:
        """bool: which of the found records (index from find) hold token losses."""
        found = index >= 0
        out = np.zeros(len(index), dtype=bool)
        out[found] = self.has_tokens[index[found]]
        return out


def read_scores(entry: Path) -> CachedScores:
    paths = sorted(entry.glob("chunk-*.npz"))
    columns = {"hashes": [], "nll": [], "n_tokens": [], "has_tokens": [], "chunk": [], "row": []}
    for i, path in enumerate(paths):
        with np.load(path) as z:
            k = len(z["hashes"])
            for name in ("hashes", "nll", "n_tokens"):
                columns[name].append(z[name])
            columns["has_tokens"].append(np.full(k, "token_nll" in z.files))
        columns["chunk"].append(np.full(k, i, dtype=np.int64))
        columns["row"].append(np.arange(k, dtype=np.int64))
    empty = {"hashes": str, "nll": np.float64, "n_tokens": np.int64, "has_tokens": bool, "chunk": np.int64,
             "row": np.int64}
    return CachedScores(**{name: np.concatenate(parts) if parts else np.array([], dtype=empty[name])
                           for name, parts in columns.items()}, paths=paths)


def write_chunk(entry: Path, hashes: np.ndarray, nll: np.ndarray, n_tokens: np.ndarray, versions: dict,
                token_nll: np.ndarray | None = None, token_byte_end: np.ndarray | None = None) -> None:
    """One chunk, named by its texts: two processes scoring the same texts write the same file (and a rescoring
    with token losses replaces a chunk of the same texts without)."""
    entry.mkdir(parents=True, exist_ok=True)
    arrays = dict(hashes=hashes, nll=nll.astype(np.float64), n_tokens=n_tokens.astype(np.int64),
                  versions=np.array(json.dumps(versions, sort_keys=True)))
    if token_nll is not None:
        if len(token_nll) != n_tokens.sum() or len(token_byte_end) != len(token_nll):
            raise ValueError("token losses do not match the texts' token counts")
        arrays.update(token_nll=token_nll.astype(np.float32), token_byte_end=token_byte_end.astype(np.int32))
    name = _digest("\n".join(hashes.tolist()))
    _atomic_write(entry / f"chunk-{name}.npz", lambda f: np.savez(f, **arrays))


def ragged_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of arange(starts[i], starts[i] + lengths[i]) over i, vectorised."""
    before = np.cumsum(lengths) - lengths
    return np.repeat(starts - before, lengths) + np.arange(lengths.sum())


def read_tokens(paths: list[Path], chunk: np.ndarray, row: np.ndarray):
    """(offsets int64 (N+1,), byte_end int64 (T,), nll float64 (T,)) of the records (chunk[n], row[n]), in this
    order: record n's tokens are [offsets[n], offsets[n+1]). Every record must hold token losses."""
    lengths = np.zeros(len(chunk), dtype=np.int64)
    parts = []
    for c in np.unique(chunk):
        chosen = np.flatnonzero(chunk == c)
        with np.load(paths[c]) as z:
            first = np.concatenate([[0], np.cumsum(z["n_tokens"])])
            parts.append((chosen, first[row[chosen]], z["token_byte_end"], z["token_nll"]))
        lengths[chosen] = first[row[chosen] + 1] - first[row[chosen]]
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    byte_end = np.empty(offsets[-1], dtype=np.int64)
    nll = np.empty(offsets[-1], dtype=np.float64)
    for chosen, starts, ends, values in parts:
        source = ragged_ranges(starts, lengths[chosen])
        target = ragged_ranges(offsets[chosen], lengths[chosen])
        byte_end[target], nll[target] = ends[source], values[source]
    return offsets, byte_end, nll


def clear_scores(entry: Path) -> None:
    for path in entry.glob("chunk-*.npz"):
        path.unlink(missing_ok=True)


def read_meta(entry: Path) -> dict | None:
    path = entry / "meta.json"
    return json.loads(path.read_text()) if path.is_file() else None


def write_meta(entry: Path, meta: dict) -> None:
    entry.mkdir(parents=True, exist_ok=True)
    _atomic_write(entry / "meta.json", lambda f: f.write(json.dumps(meta, indent=1, sort_keys=True).encode()))
