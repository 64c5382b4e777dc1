using LSVCR.Modeling.Cpu;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LSVCR.Modeling;

// Building blocks of MODEL.md §2.1. Field names are the reference's parameter names (RegisterComponents uses them),
// so state_dict() keys match the PyTorch release and its checkpoints load without renaming.

/// <summary>MHA with post-norm residual: LayerNorm(Dropout(out_linear(attention)) + q); in training one fused node
/// (<see cref="FusedMultiHeadAttention"/>), in evaluation the modules with libtorch's fused attention kernel.</summary>
internal sealed class MultiHeadAttention : nn.Module<Tensor, Tensor, Tensor, Tensor>
{
#pragma warning disable IDE1006 // reference parameter names
    private readonly Linear query;
    private readonly Linear key;
    private readonly Linear value;
    private readonly Linear out_linear;
    private readonly LayerNorm LayerNorm;
#pragma warning restore IDE1006
    private readonly int _heads;
    private readonly double _attentionDropout;
    private readonly double _hiddenDropout;
    private readonly double _eps;

    public MultiHeadAttention(RecComConfig c) : base("multi_head_attention")
    {
        _eps = c.LayerNormEps;
        query = nn.Linear(c.Hidden, c.Hidden);
        key = nn.Linear(c.Hidden, c.Hidden);
        value = nn.Linear(c.Hidden, c.Hidden);
        out_linear = nn.Linear(c.Hidden, c.Hidden);
        LayerNorm = nn.LayerNorm(c.Hidden, c.LayerNormEps);
        _heads = c.Heads;
        _attentionDropout = c.AttentionDropout;
        _hiddenDropout = c.HiddenDropout;
        RegisterComponents();
    }

    /// <param name="q">[B, Lq, d]</param>
    /// <param name="kv">[B, Lk, d]</param>
    /// <param name="mask">additive, broadcastable to [B, heads, Lq, Lk] (0 / −1e6)</param>
    public override Tensor forward(Tensor q, Tensor kv, Tensor mask)
    {
        using var scope = NewDisposeScope();
        var self = ReferenceEquals(q, kv);
        if (training && q.dtype == ScalarType.Float32 && _attentionDropout < 1 && _hiddenDropout < 1)
        {
            // The whole sublayer as one hand-written node (FusedMultiHeadAttention), k and v as one projection.
            var p = new FusedMultiHeadAttention.Parameters(query.weight!, query.bias!, cat([key.weight!, value.weight!], 0),
                cat([key.bias!, value.bias!], 0), out_linear.weight!, out_linear.bias!, LayerNorm.weight!, LayerNorm.bias!);
            return FusedMultiHeadAttention.Apply(q, self ? null : kv, mask, p, _heads, _attentionDropout, _hiddenDropout, _eps)
                .MoveToOuterDisposeScope();
        }
        var (b, lq, d) = (q.shape[0], q.shape[1], q.shape[2]);
        var lk = kv.shape[1];
        var dh = d / _heads;
        Tensor qh, kh, vh;
        if (self)
        {
            var qkv = ProjectQkv(q).view(b, lq, 3, _heads, dh).permute(2, 0, 3, 1, 4);
            (qh, kh, vh) = (qkv[0], qkv[1], qkv[2]);
        }
        else
        {
            qh = query.forward(q).view(b, lq, _heads, dh).transpose(1, 2);
            kh = key.forward(kv).view(b, lk, _heads, dh).transpose(1, 2);
            vh = value.forward(kv).view(b, lk, _heads, dh).transpose(1, 2);
        }
        var ctx = training
            ? Dropout.Apply(qh.matmul(kh.transpose(-2, -1)).mul(1.0 / Math.Sqrt(dh)).add(mask).softmax(-1), _attentionDropout, true).matmul(vh)
            : F.scaled_dot_product_attention(qh, kh, vh, mask); // fused kernel, same math without dropout
        var h = Dropout.Apply(out_linear.forward(ctx.transpose(1, 2).reshape(b, lq, d)), _hiddenDropout, training);
        return LayerNorm.forward(h.add(q)).MoveToOuterDisposeScope();
    }

    /// <summary>Self-attention's q | k | v per row, [B, L, 3d]: one [d, 3d] GEMM instead of three [d, d] ones
    /// (same parameters, same result).</summary>
    private Tensor ProjectQkv(Tensor x) =>
        F.linear(x, cat([query.weight!, key.weight!, value.weight!], 0), cat([query.bias!, key.bias!, value.bias!], 0));
}

/// <summary>FFN: LayerNorm(Dropout(linear_2(GELU(linear_1(x)))) + x) (<see cref="FusedFeedForward"/>).</summary>
internal sealed class FeedForward : nn.Module<Tensor, Tensor>
{
#pragma warning disable IDE1006
    private readonly Linear linear_1;
    private readonly Linear linear_2;
    private readonly LayerNorm LayerNorm;
#pragma warning restore IDE1006
    private readonly double _dropout;
    private readonly double _eps;

    public FeedForward(RecComConfig c) : base("feed_forward")
    {
        _eps = c.LayerNormEps;
        linear_1 = nn.Linear(c.Hidden, c.Inner);
        linear_2 = nn.Linear(c.Inner, c.Hidden);
        LayerNorm = nn.LayerNorm(c.Hidden, c.LayerNormEps);
        _dropout = c.HiddenDropout;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        // One fused node in training (erf GELU, as the reference); the libtorch modules in evaluation.
        return FusedFeedForward.Apply(x, linear_1, linear_2, LayerNorm, _dropout, _eps, training);
    }
}

internal sealed class TransformerLayer : nn.Module<Tensor, Tensor, Tensor, Tensor>
{
#pragma warning disable IDE1006
    private readonly MultiHeadAttention multi_head_attention;
    private readonly FeedForward feed_forward;
#pragma warning restore IDE1006

    public TransformerLayer(RecComConfig c) : base("layer")
    {
        multi_head_attention = new MultiHeadAttention(c);
        feed_forward = new FeedForward(c);
        RegisterComponents();
    }

    public override Tensor forward(Tensor q, Tensor kv, Tensor mask)
    {
        using var a = multi_head_attention.forward(q, kv, mask);
        return feed_forward.forward(a);
    }
}

/// <summary>
/// Stack of layers. Reference behaviour: every layer takes keys/values from the stack's ORIGINAL kv input (only the
/// query is updated). With <see cref="RecComConfig.StandardStacking"/> a self-attending stack (q and kv the same
/// tensor) instead attends to the previous layer's output; cross-attending stacks keep the other history as kv.
/// </summary>
internal sealed class TransformerStack : nn.Module<Tensor, Tensor, Tensor, Tensor>
{
#pragma warning disable IDE1006
    private readonly ModuleList<TransformerLayer> layer;
#pragma warning restore IDE1006
    private readonly bool _standard;

    public TransformerStack(RecComConfig c, int layers, string name) : base(name)
    {
        layer = nn.ModuleList(Enumerable.Range(0, layers).Select(_ => new TransformerLayer(c)).ToArray());
        _standard = c.StandardStacking;
        RegisterComponents();
    }

    public override Tensor forward(Tensor h, Tensor kv, Tensor mask)
    {
        using var scope = NewDisposeScope();
        var selfAttending = ReferenceEquals(h, kv);
        var current = h;
        foreach (var l in layer)
            current = l.forward(current, _standard && selfAttending ? current : kv, mask);
        return (ReferenceEquals(current, h) ? current.alias() : current).MoveToOuterDisposeScope();
    }
}

/// <summary>rec_att: softmax over positions of attn(h_i) + mask_i, then Σ weight·h. attn = Sequential indices 0..4.</summary>
internal sealed class AdditiveAttention : nn.Module<Tensor, Tensor, Tensor>
{
#pragma warning disable IDE1006
    private readonly Sequential attn;
#pragma warning restore IDE1006

    public AdditiveAttention(RecComConfig c) : base("rec_att")
    {
        attn = nn.Sequential(
            nn.Linear(c.Hidden, 2 * c.Hidden),
            new DropoutModule(c.HiddenDropout),
            nn.LayerNorm(2 * c.Hidden, c.LayerNormEps),
            nn.GELU(),
            nn.Linear(2 * c.Hidden, 1));
        _dropout = c.HiddenDropout;
        _eps = c.LayerNormEps;
        RegisterComponents();
    }

    private readonly double _dropout;
    private readonly double _eps;

    /// <param name="h">[B, L, d]</param>
    /// <param name="mask">[B, L] additive</param>
    /// <returns>[B, d]</returns>
    public override Tensor forward(Tensor h, Tensor mask)
    {
        // One fused node in training (FusedAdditiveAttention); the modules in evaluation and where it does not apply.
        if (training && FusedAdditiveAttention.TryApply(h, mask, (Linear)attn[0], (LayerNorm)attn[2], (Linear)attn[4], _dropout, _eps) is { } fused)
            return fused;
        using var scope = NewDisposeScope();
        var w = attn.forward(h).squeeze(-1).add(mask).softmax(-1);
        return bmm(w.unsqueeze(1), h).squeeze(1).MoveToOuterDisposeScope();
    }
}

/// <summary>Additive attention masks (0 = visible, −1e6 = hidden); pad id 0.</summary>
internal static class Masks
{
    public const float Hidden = -1e6f;

    /// <summary>[B, 1, 1, L]: key j visible iff not pad.</summary>
    public static Tensor Bidirectional(Tensor ids)
    {
        using var scope = NewDisposeScope();
        return ids.ne(0).to(ScalarType.Float32).sub_(1f).mul_(-Hidden).unsqueeze(1).unsqueeze(2).MoveToOuterDisposeScope();
    }

    /// <summary>[B, 1, L, L]: key j visible to query i iff j ≤ i and j not pad.</summary>
    public static Tensor Causal(Tensor ids)
    {
        using var scope = NewDisposeScope();
        var l = ids.shape[1];
        var lower = ones(l, l, dtype: ScalarType.Bool).tril();
        var visible = ids.ne(0).unsqueeze(1).unsqueeze(2).logical_and(lower);
        return visible.to(ScalarType.Float32).sub_(1f).mul_(-Hidden).MoveToOuterDisposeScope();
    }
}

/// <summary><see cref="Dropout"/> as a parameterless module, for the rec_att Sequential (index 1).</summary>
internal sealed class DropoutModule(double p) : nn.Module<Tensor, Tensor>("Dropout")
{
    public override Tensor forward(Tensor x) => Dropout.Apply(x, p, training);
}
