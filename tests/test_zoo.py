"""The zoo: the micro zoo builds, is cached and reused, resumes after an interruption, loads through the pool
loader, and its larger models reach a lower evaluation loss; the default zoo's families span 10x in size."""
import dataclasses
import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import mmc.zoo.build as build
from mmc.data import load_builtin
from mmc.errors import MMCError
from mmc.paths import CONF_DIR
from mmc.models import ModelSpec, count_params, load_model
from mmc.zoo.build import build_zoo, config_hash
from mmc.zoo.config import ZooConfig
from mmc.zoo.train import model_config
from test_scoring_pool import saved_tensor_count


class VocabOnly:
    """What model_config reads from a tokenizer: its size and special ids."""

    bos_token_id, eos_token_id, pad_token_id = 0, 1, 2

    def __init__(self, size: int):
        self.size = size

    def __len__(self) -> int:
        return self.size


def zoo_config(name: str) -> ZooConfig:
    node = OmegaConf.load(CONF_DIR / "pool" / f"{name}.yaml").zoo
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ZooConfig), node))


@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    cfg = zoo_config("zoo_micro")
    cache = tmp_path_factory.mktemp("zoo")
    return cfg, cache, build_zoo(cfg, cache)


@pytest.fixture
def one_thread():
    """Tiny models: one torch thread is ~10x faster than two on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def naive_nll(spec: ModelSpec, texts: list[str]) -> float:
    """Total NLL in nats of texts, one text at a time: [BOS] + tokens, every token scored once, in disjoint
    windows of the model's context."""
    model, tokenizer = load_model(spec)
    context = model.config.max_position_embeddings
    total = 0.0
    with torch.no_grad():
        for text in texts:
            seq = torch.tensor([tokenizer.bos_token_id] + tokenizer.backend_tokenizer.encode(text, add_special_tokens=False).ids)
            for start in range(0, len(seq) - 1, context):
                window = seq[start: start + context + 1]
                logp = torch.log_softmax(model(window[None, :-1]).logits[0].double(), dim=-1)
                total -= logp.gather(1, window[1:, None]).sum().item()
    return total


def test_micro_zoo_builds_and_loads_through_the_pool_loader(micro):
    cfg, cache, specs = micro
    assert [s.name for s in specs] == ["gpt-s", "gpt-m", "llama-s", "llama-m"]
    assert [s.family for s in specs] == ["gpt", "gpt", "llama", "llama"]
    for spec in specs:
        model, tokenizer = load_model(spec)
        assert spec.params == saved_tensor_count(Path(spec.source)) > 0  # as saved: a tied weight once
        assert model.config.vocab_size == len(tokenizer)
        assert model.config.max_position_embeddings == cfg.context
        assert tokenizer.bos_token_id is not None
    assert load_model(specs[2])[0].config.model_type == "llama"
    assert len(load_model(specs[2])[1]) < len(load_model(specs[0])[1])  # bytes vs BPE


def test_larger_models_reach_lower_eval_loss(micro, one_thread):
    texts = load_builtin("eval", 200, 400)[0][::40][:12]  # a few held-out texts of every domain
    _, _, specs = micro
    nll = {s.name: naive_nll(s, texts) for s in specs}
    n_bytes = sum(len(t.encode()) for t in texts)
    assert nll["gpt-m"] < nll["gpt-s"] and nll["llama-m"] < nll["llama-s"], nll
    assert all(1.0 < v / n_bytes / math.log(2) < 8.5 for v in nll.values())  # better than uniform bytes


def test_cached_zoo_is_reused_without_training(micro, monkeypatch):
    cfg, cache, specs = micro
    mtimes = {s.name: (Path(s.source) / "model.safetensors").stat().st_mtime_ns for s in specs}
    monkeypatch.setattr(build, "train_model", lambda *a, **k: pytest.fail("a cached model was retrained"))
    monkeypatch.setattr(build, "load_builtin", lambda *a, **k: pytest.fail("the cached zoo reloaded its data"))
    assert build_zoo(dataclasses.replace(cfg, workers=3), cache) == specs  # workers: not part of the cache key
    assert mtimes == {s.name: (Path(s.source) / "model.safetensors").stat().st_mtime_ns for s in specs}


def test_interrupted_build_resumes_with_finished_models(micro, tmp_path, monkeypatch):
    cfg, _, reference = micro
    trained = []
    real = build.train_model

    def train_then_fail(family, size, *args, **kwargs):
        if len(trained) == 2:
            raise KeyboardInterrupt  # the user stops the build half-way
        trained.append(f"{family.name}-{size.name}")
        real(family, size, *args, **kwargs)

    monkeypatch.setattr(build, "train_model", train_then_fail)
    with pytest.raises(KeyboardInterrupt):
        build_zoo(cfg, tmp_path)
    first = list(trained)
    trained.clear()
    specs = build_zoo(cfg, tmp_path)
    assert len(first) == 2 and sorted(first + trained) == sorted(s.name for s in specs)
    assert not list((tmp_path / config_hash(cfg)).glob(".*tmp"))  # no half-written model left behind
    for ours, theirs in zip(specs, reference):  # same config, same models: training is deterministic
        a, b = load_model(ours)[0].state_dict(), load_model(theirs)[0].state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), ours.name


def test_cache_key_follows_what_changes_the_models():
    cfg = zoo_config("zoo_micro")
    key = config_hash(cfg)
    cfg.workers = 7
    assert config_hash(cfg) == key
    cfg.steps += 1
    assert config_hash(cfg) != key


@pytest.mark.parametrize("edit, message", [
    (lambda c: setattr(c.families[0], "arch", "transformer9000"), "unknown arch"),
    (lambda c: setattr(c.families[0], "tokenizer", "sentencepiece"), "tokenizer=.sentencepiece. is not one of"),
    (lambda c: c.families[0].mixture.update(poetry=1.0), "mixture"),
    (lambda c: setattr(c.families[0].sizes[0], "heads", 3), "heads"),
    (lambda c: setattr(c.families[1], "name", "gpt"), "duplicate zoo model names"),
    (lambda c: setattr(c, "families", []), "no families"),
])
def test_bad_zoo_configs_fail_before_training(edit, message, tmp_path, monkeypatch):
    monkeypatch.setattr(build, "load_builtin", lambda *a, **k: pytest.fail("work started on a bad config"))
    cfg = zoo_config("zoo_micro")
    edit(cfg)
    with pytest.raises(MMCError, match=message):
        build_zoo(cfg, tmp_path)


def test_default_zoo_families_differ_and_span_ten_times_in_params():
    cfg = zoo_config("zoo")
    assert len(cfg.families) >= 4
    assert len({f.arch for f in cfg.families}) == len(cfg.families)
    assert len({(f.tokenizer, f.vocab_size) for f in cfg.families}) == len(cfg.families)
    assert len({tuple(sorted(f.mixture.items())) for f in cfg.families}) == len(cfg.families)
    from transformers import AutoModelForCausalLM

    for f in cfg.families:
        tokenizer = VocabOnly(259 if f.tokenizer == "byte" else f.vocab_size)
        params = [count_params(AutoModelForCausalLM.from_config(model_config(f, s, cfg.context, tokenizer)))
                  for s in f.sizes]
        assert len(params) >= 3 and params == sorted(params), f.name
        assert params[-1] >= 10 * params[0], (f.name, params)


def test_single_model_table_against_loops():
    import numpy as np

    from mmc.losses import LossMatrix
    from mmc.analysis import single_model_table

    rng = np.random.default_rng(0)
    nll, n_bytes = rng.uniform(100, 900, (3, 5)), rng.integers(100, 400, 5)
    domains = ["code", "prose", "code", "prose", "prose"]
    lm = LossMatrix(["b", "a", "c"], ["f2", "f1", "f1"], [30, 20, 10], list("vwxyz"), nll,
                    np.ones((3, 5), int), n_bytes, n_bytes, domains)
    rows = single_model_table(lm)
    assert [r["name"] for r in rows] == ["c", "a", "b"]  # by family, then params
    for r in rows:
        i = ["b", "a", "c"].index(r["name"])
        bpb = [nll[i, x] / n_bytes[x] / math.log(2) for x in range(5)]
        assert r["loss"] == pytest.approx(sum(bpb) / 5)
        assert r["loss_code"] == pytest.approx((bpb[0] + bpb[2]) / 2)
        assert r["loss_prose"] == pytest.approx((bpb[1] + bpb[3] + bpb[4]) / 3)
