"""Tiny random models and the offline tokenizers they use."""
from __future__ import annotations

from pathlib import Path

import pytest

from mmc.errors import MMCError
from mmc.models import load_model
from mmc.synthetic import synthetic_texts
from mmc.tiny_random import TinyRandomConfig, build_tiny_random
from mmc.tokenizer import KINDS, train_tokenizer
from test_scoring_pool import saved_tensor_count

SAMPLE = " Ünïcödé text — 🙂 x\n\ttabs"


def test_build_saves_loads_and_reuses(tmp_path):
    cfg = TinyRandomConfig(architectures=["gpt2", "qwen2"], widths=[32, 48], context=32, vocab_size=300)
    specs = build_tiny_random(cfg, tmp_path)
    assert [s.name for s in specs] == ["gpt2-w32-l2", "gpt2-w48-l2", "qwen2-w32-l2", "qwen2-w48-l2"]
    model, tokenizer = load_model(specs[2])
    assert type(model).__name__ == "Qwen2ForCausalLM" and model.config.max_position_embeddings == 32
    assert specs[2].params == saved_tensor_count(Path(specs[2].source))  # as saved: a tied weight once
    assert len(tokenizer) == model.config.vocab_size
    mtimes = [(p, p.stat().st_mtime_ns) for p in tmp_path.rglob("*.safetensors")]
    assert build_tiny_random(cfg, tmp_path) == specs  # same config: reused, not rebuilt
    assert all(p.stat().st_mtime_ns == t for p, t in mtimes)


def test_bad_config_is_refused(tmp_path):
    with pytest.raises(MMCError, match="architectures"):
        build_tiny_random(TinyRandomConfig(architectures=["transformer-xl"]), tmp_path)


@pytest.mark.parametrize("kind", KINDS)
def test_tokenizers_are_lossless_and_deterministic(kind):
    texts = synthetic_texts(30)
    tokenizer = train_tokenizer(texts, 320, kind)
    ids = tokenizer(SAMPLE, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == SAMPLE
    assert train_tokenizer(texts, 320, kind).get_vocab() == tokenizer.get_vocab()


def test_bos_modes():
    texts = synthetic_texts(30)
    with_bos = train_tokenizer(texts, 300, "bpe")
    without = train_tokenizer(texts, 300, "bpe", add_bos=False)
    template = train_tokenizer(texts, 300, "bpe", bos_in_template=True)
    assert with_bos.bos_token_id is not None and with_bos("ab")["input_ids"][0] != with_bos.bos_token_id
    assert without.bos_token_id is None and without.eos_token_id is not None
    assert template("ab")["input_ids"][0] == template.bos_token_id
    with pytest.raises(MMCError, match="add_bos"):
        train_tokenizer(texts, 300, "bpe", add_bos=False, bos_in_template=True)
