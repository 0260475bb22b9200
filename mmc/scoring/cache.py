"""Content-addressed cache of per-text scores: a text is never scored twice by the same model and settings.

<root>/<entry key>/ holds `meta.json` (model, settings, parameter counts) and `chunk-<hash>.npz` files
(text hashes, nll, n_tokens), each written whole to a temp file then renamed: a killed run leaves only
complete chunks, and processes scoring different models never touch the same files.
The entry key hashes the model identity (hub id + revision, or local path + hash of its files), the
dtype and the settings that change numbers (window, stride, prefix token).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmc.models import ModelSpec, is_local

SCORER_VERSION = 1  # bump when a change of the engine changes its numbers


def text_hashes(texts: list[str]) -> np.ndarray:
    return np.array([hashlib.sha256(t.encode("utf-8")).hexdigest()[:32] for t in texts])


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        write(f)
    os.replace(tmp, path)


def files_hash(directory: Path, root: Path) -> str:
    """Hash of every file of a model directory (weights, config, tokenizer), memoised by their sizes and mtimes."""
    files = sorted(p for p in directory.rglob("*") if p.is_file() and not p.name.startswith("."))
    stats = [(str(p.relative_to(directory)), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    memo = root / "files_hash" / hashlib.sha256(json.dumps([str(directory), stats]).encode()).hexdigest()[:32]
    if memo.is_file():
        return memo.read_text()
    digest = hashlib.sha256()
    for p, (name, *_) in zip(files, stats):
        digest.update(name.encode())
        with open(p, "rb") as f:
            digest.update(hashlib.file_digest(f, "sha256").digest())
    memo.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(memo, lambda f: f.write(digest.hexdigest().encode()))
    return digest.hexdigest()


def model_identity(spec: ModelSpec, root: Path) -> dict:
    if is_local(spec.source):
        path = Path(spec.source).expanduser().resolve()
        return {"path": str(path), "files": files_hash(path, root)}
    return {"hub_id": spec.source, "revision": spec.revision or "main"}


def entry_dir(root: Path, spec: ModelSpec, dtype: str, window, stride, prefix_token) -> Path:
    settings = dict(model=model_identity(spec, root), dtype=dtype, window=window, stride=stride,
                    prefix_token=prefix_token, version=SCORER_VERSION)
    return root / hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:32]


@dataclass
class CachedScores:
    hashes: np.ndarray  # str (K,)
    nll: np.ndarray  # float64 (K,)
    n_tokens: np.ndarray  # int64 (K,)

    def lookup(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(nll, n_tokens, found) for the given text hashes; missing ones are NaN / -1 / False."""
        position = {h: i for i, h in enumerate(self.hashes.tolist())}
        index = np.array([position.get(h, -1) for h in hashes.tolist()], dtype=np.int64)
        found = index >= 0
        nll = np.where(found, self.nll[index] if len(self.nll) else np.nan, np.nan)
        n_tokens = np.where(found, self.n_tokens[index] if len(self.n_tokens) else -1, -1)
        return nll, n_tokens, found


def read_scores(entry: Path) -> CachedScores:
    chunks = sorted(entry.glob("chunk-*.npz"))
    parts = []
    for path in chunks:
        with np.load(path) as z:
            parts.append((z["hashes"], z["nll"], z["n_tokens"]))
    if not parts:
        return CachedScores(np.array([], dtype=str), np.array([], dtype=np.float64), np.array([], dtype=np.int64))
    return CachedScores(*(np.concatenate(col) for col in zip(*parts)))


def write_chunk(entry: Path, hashes: np.ndarray, nll: np.ndarray, n_tokens: np.ndarray) -> None:
    """One chunk, named by its texts: two processes scoring the same texts write the same file."""
    entry.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha256("\n".join(hashes.tolist()).encode()).hexdigest()[:32]
    _atomic_write(entry / f"chunk-{name}.npz",
                  lambda f: np.savez(f, hashes=hashes, nll=nll.astype(np.float64), n_tokens=n_tokens.astype(np.int64)))


def clear_scores(entry: Path) -> None:
    for path in entry.glob("chunk-*.npz"):
        path.unlink(missing_ok=True)


def read_meta(entry: Path) -> dict | None:
    path = entry / "meta.json"
    return json.loads(path.read_text()) if path.is_file() else None


def write_meta(entry: Path, meta: dict) -> None:
    entry.mkdir(parents=True, exist_ok=True)
    _atomic_write(entry / "meta.json", lambda f: f.write(json.dumps(meta, indent=1, sort_keys=True).encode()))
