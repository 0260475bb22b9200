"""score_pool / cached_loss_matrix: the cache, resuming a killed run, dtypes never mixed, the attention
actually used, parameter counts, lengths."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import mmc.scoring.stage as stage
from mmc.scoring.config import ScoringConfig
from mmc.data import Corpus, text_id
from mmc.errors import MMCError
from mmc.models import ModelSpec, load_model
from mmc.scoring.engine import score_texts
from mmc.scoring.stage import cached_loss_matrix, score_pool
from mmc.synthetic import synthetic_texts


def corpus(n=10, seed=0) -> Corpus:
    texts = synthetic_texts(n, seed, min_words=1, max_words=40) + ["Ünïcödé — 🙂 ", " "]
    return Corpus(ids=[text_id(t) for t in texts], texts=texts, domains=["a", "b"] * (len(texts) // 2))


@pytest.fixture
def cfg(tmp_path):
    return ScoringConfig(device="cpu", cache_dir=str(tmp_path / "scores"), chunk_texts=4, batch_tokens=128)


@pytest.fixture
def loads(monkeypatch):
    """Names of the models score_pool loads."""
    names = []

    def counting_load(spec, **kwargs):
        names.append(spec.name)
        return load_model(spec, **kwargs)

    monkeypatch.setattr(stage, "load_model", counting_load)
    return names


def saved_tensor_count(path) -> int:
    """Parameters as saved: save_pretrained writes a tied weight once."""
    from safetensors import safe_open

    with safe_open(str(path / "model.safetensors"), "pt") as f:
        return sum(int(np.prod(f.get_slice(k).get_shape())) for k in f.keys())


def test_matrix_matches_the_engine_and_counts(tiny_specs, cfg, loads):
    specs = tiny_specs(["gpt2", "llama"])
    c = corpus()
    scores = score_pool(specs, c, cfg)
    matrix = scores.matrix
    for row, spec in enumerate(specs):
        model, tokenizer = load_model(spec)
        scored = score_texts(model, tokenizer, c.texts, cfg, progress=False)
        np.testing.assert_allclose(matrix.nll[row], scored.nll, rtol=1e-6)
        np.testing.assert_array_equal(matrix.n_tokens[row], scored.n_tokens)
        assert matrix.params[row] == saved_tensor_count(Path(spec.source))
    np.testing.assert_array_equal(matrix.n_bytes, [len(t.encode("utf-8")) for t in c.texts])
    np.testing.assert_array_equal(matrix.n_chars, [len(t) for t in c.texts])
    assert matrix.text_ids.tolist() == c.ids and matrix.domains.tolist() == c.domains
    assert matrix.models.tolist() == [s.name for s in specs] and matrix.families.tolist() == ["gpt2", "llama"]
    non_embedding = score_pool(specs, c, cfg, param_count="non_embedding").matrix
    hidden, vocab, positions = 32, 320, 64  # tiny_specs: both tie their head to the input embedding
    np.testing.assert_array_equal(matrix.params - non_embedding.params,
                                  [vocab * hidden + positions * hidden, vocab * hidden])  # GPT-2 learns positions
    assert scores.token_losses is None
    for record in scores.records:
        assert record["dtype"] == "float32" and record["attn_implementation"] == "sdpa"
        assert set(record["versions"]) == {"torch", "transformers", "tokenizers"}
        assert record["versions"]["torch"] == torch.__version__


def test_cache_hits_and_an_added_model(tiny_specs, cfg, loads):
    gpt2, llama = tiny_specs(["gpt2", "llama"])
    c = corpus()
    first = score_pool([gpt2], c, cfg).matrix
    assert loads == [gpt2.name]
    again = score_pool([gpt2, llama], c, cfg).matrix  # only the new model is loaded
    assert loads == [gpt2.name, llama.name]
    np.testing.assert_array_equal(again.nll[0], first.nll[0])
    score_pool([gpt2, llama], c, cfg)  # everything cached: nothing loaded
    assert loads == [gpt2.name, llama.name]
    more = corpus(12, seed=1)
    score_pool([gpt2], more, cfg)  # new texts: loaded again, for those only
    assert loads[-1] == gpt2.name
    score_pool([gpt2], c, ScoringConfig(**{**cfg.__dict__, "force": True}))
    assert loads.count(gpt2.name) == 3
    score_pool([gpt2], c, ScoringConfig(**{**cfg.__dict__, "window": 16}))  # numbers change: a new entry
    assert loads.count(gpt2.name) == 4


def test_resume_after_a_crash_mid_model(tiny_specs, cfg, monkeypatch):
    (spec,) = tiny_specs(["gpt_neox"])
    c = corpus()
    real = stage.score_sequences
    scored = []

    def crash_on_second_chunk(model, seqs, *args, **kwargs):
        if scored:
            raise KeyboardInterrupt  # the run is killed while scoring its second chunk
        scored.append(len(seqs))
        return real(model, seqs, *args, **kwargs)

    monkeypatch.setattr(stage, "score_sequences", crash_on_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        score_pool([spec], c, cfg)

    def counting(model, seqs, *args, **kwargs):
        scored.append(len(seqs))
        return real(model, seqs, *args, **kwargs)

    monkeypatch.setattr(stage, "score_sequences", counting)
    resumed = score_pool([spec], c, cfg).matrix
    assert scored[0] == cfg.chunk_texts and sum(scored[1:]) == len(c) - cfg.chunk_texts
    fresh = score_pool([spec], c, ScoringConfig(**{**cfg.__dict__, "force": True})).matrix
    np.testing.assert_allclose(resumed.nll, fresh.nll, rtol=1e-6)
    np.testing.assert_array_equal(resumed.n_tokens, fresh.n_tokens)


def test_cached_loss_matrix_reads_only_the_cache(tiny_specs, cfg, loads):
    gpt2, llama = tiny_specs(["gpt2", "llama"])
    c = corpus()
    scored = score_pool([gpt2], c, cfg).matrix
    cached = cached_loss_matrix([gpt2], c, cfg).matrix
    np.testing.assert_array_equal(cached.nll, scored.nll)
    assert cached.params.tolist() == scored.params.tolist() and loads == [gpt2.name]
    with pytest.raises(MMCError, match=f"python launch.py stage=score pool.only={llama.name}"):
        cached_loss_matrix([gpt2, llama], c, cfg)
    with pytest.raises(MMCError, match="0 of"):
        cached_loss_matrix([gpt2], c, ScoringConfig(**{**cfg.__dict__, "stride": 3}))


def test_pool_errors_before_any_work(tiny_specs, cfg, loads):
    (spec,) = tiny_specs(["gpt2"])
    with pytest.raises(MMCError, match="unknown parameter count .embedding."):
        score_pool([spec], corpus(), cfg, param_count="embedding")
    with pytest.raises(MMCError, match="duplicate"):
        score_pool([spec, spec], corpus(), cfg)
    assert loads == []


def test_device_map_auto_scores_like_a_plain_load(tiny_specs, cfg, tmp_path):
    """scoring.device_map=auto (accelerate's dispatch, for models larger than one GPU) changes no number."""
    specs = tiny_specs(["llama"])
    plain = score_pool(specs, corpus(), cfg).matrix
    dispatched = score_pool(specs, corpus(), ScoringConfig(device="cpu", cache_dir=str(tmp_path / "dispatched"),
                                                           device_map="auto", batch_tokens=128)).matrix
    np.testing.assert_allclose(dispatched.nll, plain.nll, rtol=1e-6)
    np.testing.assert_array_equal(dispatched.n_tokens, plain.n_tokens)


def test_one_matrix_never_mixes_dtypes(tiny_specs, cfg):
    """Rows scored in different dtypes are refused in one line naming the models and the rescoring command;
    once every model has the same dtype, that dtype is used for all."""
    gpt2, llama = tiny_specs(["gpt2", "llama"])
    c = corpus()
    as_dtype = lambda dtype: ScoringConfig(**{**cfg.__dict__, "dtype": dtype})
    score_pool([gpt2], c, as_dtype("float32"))
    score_pool([llama], c, as_dtype("bfloat16"))
    with pytest.raises(MMCError) as error:
        cached_loss_matrix([gpt2, llama], c, cfg)
    message = str(error.value)
    assert "\n" not in message and "float32: gpt2-w32-l2" in message and "bfloat16: llama-w32-l2" in message
    assert "python launch.py stage=score scoring.dtype=float32" in message and "llama-w32-l2" in message.split("only=")[1]
    score_pool([llama], c, as_dtype("float32"))
    mixed = cached_loss_matrix([gpt2, llama], c, cfg)
    assert [r["dtype"] for r in mixed.records] == ["float32", "float32"]
    assert cached_loss_matrix([llama], c, as_dtype("bfloat16")).records[0]["dtype"] == "bfloat16"


def test_the_attention_actually_used_is_recorded_and_keyed(tmp_path, cfg, loads):
    """BLOOM has no SDPA attention: transformers runs it eager, and the cache entry and the record say so."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from mmc.tokenizer import train_tokenizer

    tokenizer = train_tokenizer(synthetic_texts(50), 300, "bpe")
    config = AutoConfig.for_model("bloom", vocab_size=len(tokenizer), hidden_size=32, n_layer=1, n_head=2,
                                  bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / "bloom")
    tokenizer.save_pretrained(tmp_path / "bloom")
    spec = ModelSpec(name="bloom", family="bloom", source=str(tmp_path / "bloom"))
    c = corpus(4)
    small = ScoringConfig(**{**cfg.__dict__, "window": 32})
    (record,) = score_pool([spec], c, small).records
    assert record["attn_implementation"] == "eager"
    eager = score_pool([spec], c, ScoringConfig(**{**small.__dict__, "attn_implementation": "eager"}))
    assert loads == ["bloom"]  # asking for eager finds the same entry: nothing is scored again
    assert eager.records[0]["attn_implementation"] == "eager"


def test_scoring_threads_sets_torchs_cpu_threads(tiny_specs, cfg, monkeypatch):
    seen = []
    score = stage.score_sequences
    monkeypatch.setattr(stage, "score_sequences", lambda *a, **k: seen.append(torch.get_num_threads()) or score(*a, **k))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        cfg.threads = 2
        score_pool(tiny_specs(["gpt2"]), corpus(), cfg)
    finally:
        torch.set_num_threads(threads)
    assert seen and set(seen) == {2}
