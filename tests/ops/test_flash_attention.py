"""ops.flash_attention: SDPA backend against the written-out reference; argument checks; dropout."""
import pytest
import torch

from projects.mmdet3d_plugin import ops
from projects.mmdet3d_plugin.ops import dispatch

OP = "flash_attention"


@pytest.fixture(autouse=True)
def _automatic_backends():
    dispatch.reset()
    yield
    dispatch.reset()


def _qkv(seed=0, batch=2, len_q=5, len_k=7, channels=16):
    gen = torch.Generator().manual_seed(seed)
    return (
        torch.randn(batch, len_q, channels, generator=gen),
        torch.randn(batch, len_k, channels, generator=gen),
        torch.randn(batch, len_k, channels, generator=gen),
    )


def _by_hand(q, k, v, num_heads):
    """Per head: softmax(q k^T / sqrt(D)) v, heads concatenated."""
    head_dim = q.shape[-1] // num_heads
    outs = []
    for h in range(num_heads):
        sl = slice(h * head_dim, (h + 1) * head_dim)
        attn = torch.softmax(q[..., sl] @ k[..., sl].transpose(1, 2) / head_dim**0.5, dim=-1)
        outs.append(attn @ v[..., sl])
    return torch.cat(outs, dim=-1)


@pytest.mark.parametrize("backend", ["sdpa", "reference"])
def test_attention_matches_per_head_softmax_by_hand(backend):
    ops.set_backend(OP, backend)
    q, k, v = _qkv()
    out = ops.flash_attention(q, k, v, num_heads=4)
    assert out.shape == (2, 5, 16), f"output shape {tuple(out.shape)} != [B, Lq, C]"
    assert torch.allclose(out, _by_hand(q, k, v, 4), atol=1e-5), f"{backend} differs from the per-head formula"


def test_cpu_default_is_sdpa_and_gradients_match_reference():
    assert dispatch.backend_name(OP, torch.device("cpu")) == "sdpa", "cpu must default to SDPA"
    q, k, v = (t.requires_grad_() for t in _qkv(seed=1))
    ops.flash_attention(q, k, v, num_heads=2).sum().backward()
    grads = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    ops.set_backend(OP, "reference")
    ops.flash_attention(q, k, v, num_heads=2).sum().backward()
    for name, a, b in zip("qkv", grads, (q.grad, k.grad, v.grad)):
        assert torch.allclose(a, b, atol=1e-5), f"grad of {name} differs between SDPA and reference"


def test_dropout_only_when_training():
    q, k, v = _qkv()
    eval_out = ops.flash_attention(q, k, v, num_heads=4, dropout_p=0.5, training=False)
    assert torch.allclose(eval_out, _by_hand(q, k, v, 4), atol=1e-5), "dropout must be off when not training"
    torch.manual_seed(0)
    train_out = ops.flash_attention(q, k, v, num_heads=4, dropout_p=0.5, training=True)
    assert not torch.allclose(train_out, eval_out), "dropout 0.5 in training left the output unchanged"


def test_explicit_scale_is_used():
    q, k, v = _qkv()
    out = ops.flash_attention(q, k, v, num_heads=1, scale=0.0)
    expected = v.mean(dim=1, keepdim=True).expand_as(out)  # scale 0: uniform attention
    assert torch.allclose(out, expected, atol=1e-6), "scale=0 must give the mean of the values"


def test_mismatched_shapes_raise_value_error():
    q, k, v = _qkv()
    with pytest.raises(ValueError, match="flash_attention"):
        ops.flash_attention(q, k[..., :8], v, num_heads=2)
    with pytest.raises(ValueError, match="num_heads"):
        ops.flash_attention(q, k, v, num_heads=3)
