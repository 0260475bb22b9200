"""The score cache: one key per thing that changes a number, chunks, lookups, token records, atomic files."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mmc.models import ModelSpec
from mmc.scoring import cache as score_cache

SETTINGS = dict(dtype="float32", attn_implementation="sdpa", window=None, stride=None, prefix_token=None)
VERSIONS = {"torch": "t", "transformers": "x", "tokenizers": "k"}


def entry(root, spec, **changes):
    s = {**SETTINGS, **changes}
    model_dir = score_cache.model_dir(root, score_cache.model_identity(spec, root), s["window"], s["stride"],
                                      s["prefix_token"])
    return score_cache.entry_dir(model_dir, s["dtype"], s["attn_implementation"])


@pytest.fixture
def local_model(tmp_path):
    """A local model directory: weights, config and tokenizer files."""
    path = tmp_path / "model"
    path.mkdir()
    for name, content in [("model.safetensors", b"weights"), ("config.json", b"{}"), ("tokenizer.json", b"{}")]:
        (path / name).write_bytes(content)
    return ModelSpec(name="m", family="f", source=str(path))


@pytest.mark.parametrize("changes", [{"dtype": "bfloat16"}, {"attn_implementation": "eager"}, {"window": 128},
                                     {"stride": 64}, {"prefix_token": "<|pad|>"}], ids=lambda c: next(iter(c)))
def test_the_entry_changes_with_each_setting(tmp_path, local_model, changes):
    root = tmp_path / "cache"
    assert entry(root, local_model) == entry(root, local_model)
    assert entry(root, local_model, **changes) != entry(root, local_model)


@pytest.mark.parametrize("file", ["model.safetensors", "config.json", "tokenizer.json"])
def test_the_entry_changes_with_the_model_files(tmp_path, local_model, file):
    """Weights, config and tokenizer: any changed file is another model."""
    root = tmp_path / "cache"
    before = entry(root, local_model)
    (tmp_path / "model" / file).write_bytes(b"changed")
    assert entry(root, local_model) != before


def test_the_entry_changes_with_the_hub_commit(tmp_path):
    root = tmp_path / "cache"
    a, b = "a" * 40, "b" * 40  # commits: resolved without the hub
    hub = ModelSpec(name="h", family="f", source="org/model-that-is-not-local", revision=a)
    assert score_cache.model_identity(hub, root) == {"hub_id": hub.source, "commit": a}
    assert entry(root, hub) != entry(root, ModelSpec("h", "f", hub.source, revision=b))


def test_the_entry_changes_with_the_scorer_version(tmp_path, local_model, monkeypatch):
    """Entries of an earlier layout or engine are never read under the new one."""
    root = tmp_path / "cache"
    before = entry(root, local_model)
    monkeypatch.setattr(score_cache, "SCORER_VERSION", score_cache.SCORER_VERSION + 1)
    assert entry(root, local_model) != before


def test_texts_are_keyed_by_their_exact_characters():
    variants = ["café", "cafe\u0301", "café ", "Café"]  # NFC, NFD, a trailing space, a capital
    assert len(set(score_cache.text_hashes(variants).tolist())) == len(variants)


def test_chunks_round_trip_and_lookup(tmp_path):
    entry_dir = tmp_path / "entry"
    hashes = score_cache.text_hashes(["a", "b", "c"])
    score_cache.write_chunk(entry_dir, hashes[:2], np.array([1.5, 2.5]), np.array([3, 4]), VERSIONS)
    score_cache.write_chunk(entry_dir, hashes[2:], np.array([0.25]), np.array([1]), VERSIONS)
    scores = score_cache.read_scores(entry_dir)
    index = scores.find(score_cache.text_hashes(["c", "x", "a"]))
    assert index[1] == -1 and (index[[0, 2]] >= 0).all()
    assert scores.nll[index[[0, 2]]].tolist() == [0.25, 1.5] and scores.n_tokens[index[[0, 2]]].tolist() == [1, 3]
    assert not scores.with_tokens(index).any()
    with np.load(scores.paths[0]) as z:
        assert json.loads(str(z["versions"])) == VERSIONS
    assert not [p for p in entry_dir.iterdir() if p.name.startswith(".")]  # no temp files left
    score_cache.clear_scores(entry_dir)
    assert (score_cache.read_scores(entry_dir).find(hashes) == -1).all()


def test_token_records_win_and_read_back_in_any_order(tmp_path):
    """A text scored with totals only, then again with token losses: the token record is the one read, so its
    total and its tokens come from the same scoring."""
    entry_dir = tmp_path / "entry"
    hashes = score_cache.text_hashes(["a", "b", "c"])
    score_cache.write_chunk(entry_dir, hashes, np.array([1.0, 2.0, 3.0]), np.array([1, 2, 3]), VERSIONS)
    score_cache.write_chunk(entry_dir, hashes[[2, 0]], np.array([3.5, 1.5]), np.array([3, 1]), VERSIONS,
                            token_nll=np.array([1.0, 2.0, 0.5, 1.5]), token_byte_end=np.array([1, 2, 3, 1]))
    scores = score_cache.read_scores(entry_dir)
    index = scores.find(hashes)
    assert scores.nll[index].tolist() == [1.5, 2.0, 3.5]
    assert scores.with_tokens(index).tolist() == [True, False, True]
    picked = index[[0, 2]]  # text a then c: the reverse of their order in the chunk
    offsets, byte_end, nll = score_cache.read_tokens(scores.paths, scores.chunk[picked], scores.row[picked])
    assert offsets.tolist() == [0, 1, 4] and byte_end.tolist() == [1, 1, 2, 3] and nll.tolist() == [1.5, 1.0, 2.0, 0.5]
    assert byte_end.dtype == np.int64 and nll.dtype == np.float64


def test_ragged_ranges():
    starts, lengths = np.array([5, 0, 9]), np.array([2, 0, 3])
    assert score_cache.ragged_ranges(starts, lengths).tolist() == [5, 6, 9, 10, 11]


def test_meta_round_trip(tmp_path):
    meta = {"name": "m", "params": {"total": 10, "non_embedding": 4}}
    score_cache.write_meta(tmp_path / "e", meta)
    assert score_cache.read_meta(tmp_path / "e") == meta
    assert score_cache.read_meta(tmp_path / "missing") is None
