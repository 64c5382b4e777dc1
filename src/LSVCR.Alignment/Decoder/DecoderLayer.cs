using TorchSharp;
using static TorchSharp.torch;

namespace LSVCR.Alignment.Decoder;

/// <summary>Pre-norm decoder layer: x + self_attn(input_layernorm(x)), then + mlp(post_attention_layernorm(·)).</summary>
public sealed class DecoderLayer : nn.Module<Tensor, Tensor, Tensor, Tensor, Tensor>
{
#pragma warning disable IDE1006
    private readonly RmsNorm input_layernorm;
    private readonly DecoderAttention self_attn;
    private readonly RmsNorm post_attention_layernorm;
    private readonly SwiGluMlp mlp;
#pragma warning restore IDE1006

    public DecoderLayer(DecoderConfig c) : base("layer")
    {
        input_layernorm = new RmsNorm(c.Hidden, c.RmsNormEps, "input_layernorm");
        self_attn = new DecoderAttention(c);
        post_attention_layernorm = new RmsNorm(c.Hidden, c.RmsNormEps, "post_attention_layernorm");
        mlp = new SwiGluMlp(c);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Tensor cos, Tensor sin, Tensor mask)
    {
        using var scope = NewDisposeScope();
        var h = x.add(self_attn.forward(input_layernorm.forward(x), cos, sin, mask));
        return h.add(mlp.forward(post_attention_layernorm.forward(h))).MoveToOuterDisposeScope();
    }
}
