"""The score cache: keys, chunks, lookups, atomic files."""
from __future__ import annotations

import numpy as np

from mmc.models import ModelSpec
from mmc.scoring import cache as score_cache


def test_chunks_round_trip_and_lookup(tmp_path):
    entry = tmp_path / "entry"
    hashes = score_cache.text_hashes(["a", "b", "c"])
    score_cache.write_chunk(entry, hashes[:2], np.array([1.5, 2.5]), np.array([3, 4]))
    score_cache.write_chunk(entry, hashes[2:], np.array([0.25]), np.array([1]))
    nll, n_tokens, found = score_cache.read_scores(entry).lookup(score_cache.text_hashes(["c", "x", "a"]))
    np.testing.assert_array_equal(found, [True, False, True])
    np.testing.assert_array_equal(nll[found], [0.25, 1.5])
    np.testing.assert_array_equal(n_tokens[found], [1, 3])
    assert not [p for p in entry.iterdir() if p.name.startswith(".")]  # no temp files left
    score_cache.clear_scores(entry)
    assert not score_cache.read_scores(entry).lookup(hashes)[2].any()


def test_keys_follow_model_files_and_settings(tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.safetensors").write_bytes(b"weights")
    spec = ModelSpec(name="m", family="f", source=str(model_dir))
    root = tmp_path / "cache"
    key = score_cache.entry_dir(root, spec, "float32", None, None, None)
    assert key == score_cache.entry_dir(root, spec, "float32", None, None, None)
    assert key != score_cache.entry_dir(root, spec, "bfloat16", None, None, None)
    assert key != score_cache.entry_dir(root, spec, "float32", 128, None, None)
    assert key != score_cache.entry_dir(root, spec, "float32", None, 64, None)
    (model_dir / "model.safetensors").write_bytes(b"other weights")
    assert key != score_cache.entry_dir(root, spec, "float32", None, None, None)
    hub = ModelSpec(name="h", family="f", source="org/model-that-is-not-local")
    assert score_cache.entry_dir(root, hub, "float32", None, None, None) != \
        score_cache.entry_dir(root, ModelSpec("h", "f", hub.source, revision="v2"), "float32", None, None, None)


def test_meta_round_trip(tmp_path):
    meta = {"name": "m", "params": {"total": 10, "non_embedding": 4}}
    score_cache.write_meta(tmp_path / "e", meta)
    assert score_cache.read_meta(tmp_path / "e") == meta
    assert score_cache.read_meta(tmp_path / "missing") is None
