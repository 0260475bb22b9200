"""Models: ModelSpec, loading any `from_pretrained` source (local directory or hub id), parameter counts.

A hub model is always loaded at a commit: its revision (a branch or tag such as `main`) is resolved the
way from_pretrained resolves it, so a score can name exactly the weights and tokenizer it came from.
A leaf module: the pools (mmc.pool), the zoo and the tiny random models all build on it.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, replace
from pathlib import Path

from mmc.errors import MMCError


@dataclass(frozen=True)
class ModelSpec:
    """One model of a pool. `source` is what `from_pretrained` takes: a local directory or a hub id."""

    name: str
    family: str
    source: str
    revision: str | None = None
    params: int | None = None  # filled from the loaded model when None


def is_local(source: str) -> bool:
    return source.startswith(("/", ".", "~")) or Path(source).expanduser().exists()


def duplicates(names) -> list[str]:
    """Names that occur more than once, sorted."""
    names = list(names)
    return sorted({n for n in names if names.count(n) > 1})


def check_specs(specs: list[ModelSpec]) -> None:
    """Fail before any scoring on duplicate names or local paths that do not exist."""
    dupes = duplicates(s.name for s in specs)
    if dupes:
        raise MMCError(f"duplicate model names {dupes} in the pool; give every model a unique name")
    for s in specs:
        if is_local(s.source) and not Path(s.source).expanduser().is_dir():
            raise MMCError(f"model {s.name!r}: path {s.source} does not exist; fix its `path` in the pool config")


COMMIT = re.compile(r"[0-9a-f]{40}")


def source_path(spec: ModelSpec) -> str:
    """What from_pretrained is given: the expanded local directory, or the hub id."""
    return str(Path(spec.source).expanduser()) if is_local(spec.source) else spec.source


def hub_commit(repo_id: str, revision: str | None) -> str:
    """The commit a hub revision points to, found as from_pretrained finds it: online the hub answers (and the
    HF cache's refs/<revision> records it), offline (HF_HUB_OFFLINE=1, or no network) the HF cache's record."""
    if revision and COMMIT.fullmatch(revision):
        return revision
    from huggingface_hub import hf_hub_download

    try:
        path = hf_hub_download(repo_id, "config.json", revision=revision)
    except Exception as e:  # no network and nothing cached, an unknown repo or revision, a gated repo
        raise MMCError(f"cannot resolve revision {revision or 'main'} of hub model {repo_id} to a commit "
                       f"({str(e).splitlines()[0]}); connect to the hub once, or pin the model's revision "
                       "to a commit hash") from e
    found = re.search(r"snapshots/([0-9a-f]{40})/", Path(path).as_posix())
    if found is None:
        raise MMCError(f"hub model {repo_id}: {path} is not in a Hugging Face cache snapshot; cannot tell its commit")
    return found[1]


def pinned(spec: ModelSpec) -> ModelSpec:
    """The spec with a hub model's revision resolved to its commit (local models unchanged)."""
    return spec if is_local(spec.source) else replace(spec, revision=hub_commit(spec.source, spec.revision))


def attention_implementation(spec: ModelSpec, requested: str | None, dtype) -> str:
    """The attention implementation from_pretrained gives this model: `requested` where the architecture
    supports it, else transformers' default for it (sdpa, else eager). Decided from the config on the meta
    device (no weights are read), so a model whose scores are cached need not be loaded to know it."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(source_path(spec), revision=spec.revision)
    except OSError as e:
        raise MMCError(f"model {spec.name!r}: cannot load the config of {spec.source!r} ({str(e).splitlines()[0]}); "
                       "check the path or hub id, and the network for hub models") from e
    with torch.device("meta"):
        try:  # on a copy: a refused request stays in the config it was tried on
            model = AutoModelForCausalLM.from_config(copy.deepcopy(config), attn_implementation=requested, dtype=dtype)
        except (ValueError, ImportError):  # not supported by this architecture or this installation
            model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model.config._attn_implementation


def load_model(spec: ModelSpec, device: str = "cpu", dtype=None, device_map: str | None = None,
               attn_implementation: str | None = None):
    """(model, tokenizer) through the same `from_pretrained` path for local and hub models, a hub model at the
    commit its revision points to (config._commit_hash). attn_implementation: None is transformers' default."""
    import torch  # heavy: loaded by the runs that score, not by start-up
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = pinned(spec)
    source = source_path(spec)
    kwargs = dict(revision=spec.revision, dtype=dtype or torch.float32, attn_implementation=attn_implementation)
    if device_map:
        kwargs["device_map"] = device_map
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, revision=spec.revision)
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except OSError as e:
        raise MMCError(f"model {spec.name!r}: cannot load {source!r} ({str(e).splitlines()[0]}); "
                       "check the path or hub id, and the network for hub models") from e
    except (ValueError, ImportError) as e:
        raise MMCError(f"model {spec.name!r}: loading {source!r} with attn_implementation={attn_implementation} "
                       f"failed ({str(e).splitlines()[0]}); if it is the attention, set "
                       "scoring.attn_implementation=eager") from e
    if not device_map:
        model.to(device)
    model.eval()
    return model, tokenizer


def count_params(model, non_embedding: bool = False) -> int:
    """Total parameters, tied weights counted once. non_embedding: without the input token and position
    embeddings and without the output head, whether the head is tied to the input embeddings or not."""
    import torch

    total = sum(p.numel() for p in model.parameters())  # parameters() yields a tied weight once
    if not non_embedding:
        return int(total)
    excluded = {id(m.weight): m.weight for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    head = model.get_output_embeddings()
    if head is not None:
        excluded.update({id(p): p for p in head.parameters()})
    return int(total - sum(p.numel() for p in excluded.values()))
