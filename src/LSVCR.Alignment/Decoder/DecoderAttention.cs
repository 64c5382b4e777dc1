using LSVCR.Alignment.Lora;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LSVCR.Alignment.Decoder;

/// <summary>Grouped-query self-attention with rotary positions: KvHeads key/value heads, each shared by Heads/KvHeads query heads.</summary>
public sealed class DecoderAttention : nn.Module<Tensor, Tensor, Tensor, Tensor, Tensor>
{
#pragma warning disable IDE1006 // Hugging Face parameter names
    private readonly LoraLinear q_proj;
    private readonly LoraLinear k_proj;
    private readonly LoraLinear v_proj;
    private readonly LoraLinear o_proj;
#pragma warning restore IDE1006
    private readonly int _heads;
    private readonly int _kvHeads;
    private readonly int _headDim;

    public DecoderAttention(DecoderConfig c) : base("self_attn")
    {
        _heads = c.Heads;
        _kvHeads = c.KvHeads;
        _headDim = c.HeadDim;
        q_proj = new LoraLinear(c.Hidden, c.Heads * c.HeadDim, c.QkvBias, "q_proj");
        k_proj = new LoraLinear(c.Hidden, c.KvHeads * c.HeadDim, c.QkvBias, "k_proj");
        v_proj = new LoraLinear(c.Hidden, c.KvHeads * c.HeadDim, c.QkvBias, "v_proj");
        o_proj = new LoraLinear(c.Heads * c.HeadDim, c.Hidden, c.OutputBias, "o_proj");
        RegisterComponents();
    }

    /// <param name="x">[B, T, H]</param>
    /// <param name="cos">rotary table [T, d]</param>
    /// <param name="sin">rotary table [T, d]</param>
    /// <param name="mask">additive [B, 1, T, T] (causal and padding)</param>
    public override Tensor forward(Tensor x, Tensor cos, Tensor sin, Tensor mask)
    {
        using var scope = NewDisposeScope();
        var (b, t) = (x.shape[0], x.shape[1]);
        Tensor Split(Tensor y, int heads) => y.view(b, t, heads, _headDim).transpose(1, 2);
        var q = RotaryEmbedding.Apply(Split(q_proj.forward(x), _heads), cos, sin);
        var k = RotaryEmbedding.Apply(Split(k_proj.forward(x), _kvHeads), cos, sin);
        var v = Split(v_proj.forward(x), _kvHeads);
        if (_kvHeads != _heads)
        {
            // Query head h reads key/value head h / (Heads/KvHeads), as HF's repeat_kv.
            var groups = _heads / _kvHeads;
            k = k.repeat_interleave(groups, dim: 1);
            v = v.repeat_interleave(groups, dim: 1);
        }
        var ctx = F.scaled_dot_product_attention(q, k, v, mask);
        return o_proj.forward(ctx.transpose(1, 2).reshape(b, t, _heads * _headDim)).MoveToOuterDisposeScope();
    }
}
