using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LSVCR.Modeling;

/// <summary>
/// MHA of MODEL.md §2.1 with post-norm residual: LayerNorm(Dropout(out_linear(attention(q, kv, mask))) + q), scaled
/// dot-product per head, additive mask, attention dropout. Field names are the reference's parameter names
/// (RegisterComponents uses them), so state_dict() keys match the PyTorch release.
/// </summary>
internal class MultiHeadAttention : nn.Module<Tensor, Tensor, Tensor, Tensor>
{
#pragma warning disable IDE1006 // reference parameter names
    private protected readonly Linear query;
    private protected readonly Linear key;
    private protected readonly Linear value;
    private protected readonly Linear out_linear;
    private protected readonly LayerNorm LayerNorm;
#pragma warning restore IDE1006
    private protected readonly int Heads;
    private protected readonly double AttentionDropout;
    private protected readonly double HiddenDropout;
    private protected readonly double Eps;

    public MultiHeadAttention(RecComConfig c) : base("multi_head_attention")
    {
        Eps = c.LayerNormEps;
        query = nn.Linear(c.Hidden, c.Hidden);
        key = nn.Linear(c.Hidden, c.Hidden);
        value = nn.Linear(c.Hidden, c.Hidden);
        out_linear = nn.Linear(c.Hidden, c.Hidden);
        LayerNorm = nn.LayerNorm(c.Hidden, c.LayerNormEps);
        Heads = c.Heads;
        AttentionDropout = c.AttentionDropout;
        HiddenDropout = c.HiddenDropout;
        RegisterComponents();
    }

    /// <param name="q">[B, Lq, d]</param>
    /// <param name="kv">[B, Lk, d]; the same tensor object as <paramref name="q"/> for self-attention</param>
    /// <param name="mask">additive, broadcastable to [B, heads, Lq, Lk] (0 / −1e6)</param>
    public override Tensor forward(Tensor q, Tensor kv, Tensor mask)
    {
        using var scope = NewDisposeScope();
        var (b, lq, d) = (q.shape[0], q.shape[1], q.shape[2]);
        var lk = kv.shape[1];
        var dh = d / Heads;
        var m = mask.to(q.dtype);
        Tensor qh, kh, vh;
        if (ReferenceEquals(q, kv))
        {
            var qkv = ProjectQkv(q).view(b, lq, 3, Heads, dh).permute(2, 0, 3, 1, 4);
            (qh, kh, vh) = (qkv[0], qkv[1], qkv[2]);
        }
        else
        {
            qh = query.forward(q).view(b, lq, Heads, dh).transpose(1, 2);
            kh = key.forward(kv).view(b, lk, Heads, dh).transpose(1, 2);
            vh = value.forward(kv).view(b, lk, Heads, dh).transpose(1, 2);
        }
        var ctx = training
            ? Dropout.Apply(qh.matmul(kh.transpose(-2, -1)).mul(1.0 / Math.Sqrt(dh)).add(m).softmax(-1), AttentionDropout, true).matmul(vh)
            : F.scaled_dot_product_attention(qh, kh, vh, m); // libtorch's fused kernel: the same math without dropout
        var h = Dropout.Apply(out_linear.forward(ctx.transpose(1, 2).reshape(b, lq, d)), HiddenDropout, training);
        return LayerNorm.forward(h.add(q)).MoveToOuterDisposeScope();
    }

    /// <summary>Self-attention's q | k | v per row, [B, L, 3d]: one [d, 3d] GEMM instead of three [d, d] ones
    /// (same parameters, same result).</summary>
    private Tensor ProjectQkv(Tensor x) =>
        F.linear(x, cat([query.weight!, key.weight!, value.weight!], 0), cat([query.bias!, key.bias!, value.bias!], 0));
}
