"""Parameter counts (pool.param_count) against counts written out by hand from each architecture's config.

non_embedding leaves out the input token embeddings, the learned position embeddings and the output head,
whether the head is tied to the input embeddings or not."""
from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from mmc.models import count_params

V, P, H, L, I = 300, 48, 32, 3, 80  # vocabulary, positions, hidden, layers, MLP width


def gpt2(tied: bool):
    config = AutoConfig.for_model("gpt2", vocab_size=V, n_positions=P, n_embd=H, n_layer=L, n_head=4,
                                  tie_word_embeddings=tied)
    per_layer = (2 * H) + (H * 3 * H + 3 * H) + (H * H + H) + (2 * H) + (H * 4 * H + 4 * H) + (4 * H * H + H)
    body = L * per_layer + 2 * H  # ln_1, c_attn, attn c_proj, ln_2, c_fc, mlp c_proj; ln_f
    return config, body, V * H + P * H + (0 if tied else V * H)  # wte, wpe (learned positions), lm_head


def llama(tied: bool):
    heads, kv_heads, head_dim = 4, 2, 8
    config = AutoConfig.for_model("llama", vocab_size=V, hidden_size=H, intermediate_size=I, num_hidden_layers=L,
                                  num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=head_dim,
                                  max_position_embeddings=P, tie_word_embeddings=tied)
    attention = H * heads * head_dim + 2 * H * kv_heads * head_dim + heads * head_dim * H  # q, k, v, o: no biases
    body = L * (attention + 3 * H * I + 2 * H) + H  # gate, up, down; two RMSNorms; the final norm
    return config, body, V * H + (0 if tied else V * H)  # rotary positions have no parameters


def gpt_neox(tied: bool):
    config = AutoConfig.for_model("gpt_neox", vocab_size=V, hidden_size=H, intermediate_size=I, num_hidden_layers=L,
                                  num_attention_heads=4, max_position_embeddings=P, tie_word_embeddings=tied)
    per_layer = 2 * (2 * H) + (H * 3 * H + 3 * H) + (H * H + H) + (H * I + I) + (I * H + H)
    body = L * per_layer + 2 * H  # two LayerNorms, fused qkv, dense, h->4h, 4h->h (all with biases); final norm
    return config, body, V * H + (0 if tied else V * H)  # embed_in, embed_out


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
@pytest.mark.parametrize("architecture", [gpt2, llama, gpt_neox], ids=lambda f: f.__name__)
def test_counts_match_the_hand_counts(architecture, tied):
    config, body, embeddings_and_head = architecture(tied)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    assert count_params(model, non_embedding=True) == body
    assert count_params(model) == body + embeddings_and_head
