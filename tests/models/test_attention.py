"""MultiheadFlashAttention: equals torch.nn.MultiheadAttention with the same weights, upstream's keys and semantics."""
import math

import pytest
import torch
from torch import nn

from projects.mmdet3d_plugin.models.attention import MultiheadFlashAttention, gen_sineembed_for_position

E, HEADS = 16, 4


def _pair(seed: int = 0):
    torch.manual_seed(seed)
    ours = MultiheadFlashAttention(E, HEADS, batch_first=True, dropout=0.1).eval()
    with torch.no_grad():
        for p in ours.parameters():
            p.normal_(0, 0.3)
    ref = nn.MultiheadAttention(E, HEADS, batch_first=True).eval()
    ref.load_state_dict(ours.attn.state_dict())
    return ours, ref


def test_state_dict_keys_match_upstream_packing():
    ours = MultiheadFlashAttention(512, 8, batch_first=True, dropout=0.1)
    shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    expected = {
        "attn.in_proj_weight": (1536, 512),
        "attn.in_proj_bias": (1536,),
        "attn.out_proj.weight": (512, 512),
        "attn.out_proj.bias": (512,),
    }
    assert shapes == expected, f"state dict {shapes} != {expected}"


def test_self_attention_with_query_pos_equals_torch_mha_plus_identity():
    ours, ref = _pair()
    x = torch.randn(2, 7, E)
    pos = torch.randn(2, 7, E)
    out = ours(x, query_pos=pos)
    q = x + pos
    expected = x + ref(q, q, x, need_weights=False)[0]
    assert out.shape == (2, 7, E), f"shape {tuple(out.shape)}"
    assert torch.allclose(out, expected, atol=1e-5), f"max diff {(out - expected).abs().max()}"


def test_cross_attention_with_key_pos_equals_torch_mha():
    ours, ref = _pair(1)
    query, key, value = torch.randn(2, 5, E), torch.randn(2, 9, E), torch.randn(2, 9, E)
    qpos, kpos = torch.randn(2, 5, E), torch.randn(2, 9, E)
    out = ours(query, key, value, query_pos=qpos, key_pos=kpos)
    expected = query + ref(query + qpos, key + kpos, value, need_weights=False)[0]
    assert torch.allclose(out, expected, atol=1e-5), f"max diff {(out - expected).abs().max()}"


def test_flash_convention_padding_mask_ignores_invalid_keys():
    ours, _ = _pair(2)
    query, key = torch.randn(1, 3, E), torch.randn(1, 6, E)
    valid = torch.tensor([[True, True, False, True, False, True]])
    masked = ours(query, key, key, key_padding_mask=valid)
    kept = key[:, valid[0]]
    expected = ours(query, kept, kept)
    assert torch.allclose(masked, expected, atol=1e-5), "True must mean 'valid key' (flash-attn convention)"


def test_dropout_argument_sets_attention_and_residual_dropout_without_shared_state():
    a = MultiheadFlashAttention(E, HEADS, dropout=0.3)
    b = MultiheadFlashAttention(E, HEADS)
    assert a.attn.dropout_p == 0.3, "dropout -> attention-probability dropout"
    assert isinstance(a.dropout_layer, nn.Dropout) and a.dropout_layer.p == 0.3, "dropout -> residual Dropout"
    assert b.attn.dropout_p == 0.0 and b.dropout_layer.p == 0.0, "defaults must not be mutated by another instance"


def test_train_mode_dropout_is_random_and_eval_is_deterministic():
    ours, _ = _pair(3)
    x = torch.randn(1, 6, E)
    ours.train()
    torch.manual_seed(0)
    first = ours(x)
    second = ours(x)
    assert not torch.allclose(first, second), "training-mode dropout should change the output"
    ours.eval()
    assert torch.equal(ours(x), ours(x)), "eval mode must be deterministic"


def test_attention_mask_is_refused():
    ours, _ = _pair()
    with pytest.raises(ValueError, match="attn_mask"):
        ours(torch.randn(1, 2, E), attn_mask=torch.zeros(2, 2, dtype=torch.bool))


def test_sine_embedding_hand_values():
    pos = torch.tensor([[0.25, -0.5]])
    emb = gen_sineembed_for_position(pos, hidden_dim=8)
    # half = 4, dim_t = [1, 1, 100, 100]; y block first then x block
    y = -0.5 * 2 * math.pi
    x = 0.25 * 2 * math.pi
    expected = torch.tensor(
        [[math.sin(y), math.cos(y), math.sin(y / 100), math.cos(y / 100),
          math.sin(x), math.cos(x), math.sin(x / 100), math.cos(x / 100)]]
    )
    assert torch.allclose(emb, expected, atol=1e-6), f"{emb} != {expected}"
