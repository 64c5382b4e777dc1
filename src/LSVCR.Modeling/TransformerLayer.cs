using TorchSharp;
using static TorchSharp.torch;

namespace LSVCR.Modeling;

/// <summary>Layer(q, kv, mask) = FFN(MHA(q, kv, mask)) (MODEL.md §2.1).</summary>
internal sealed class TransformerLayer : nn.Module<Tensor, Tensor, Tensor, Tensor>
{
#pragma warning disable IDE1006 // reference parameter names
    private readonly MultiHeadAttention multi_head_attention;
    private readonly FeedForward feed_forward;
#pragma warning restore IDE1006

    public TransformerLayer(RecComConfig c, ModelBackend backend) : base("layer")
    {
        multi_head_attention = backend.MultiHeadAttention(c);
        feed_forward = backend.FeedForward(c);
        RegisterComponents();
    }

    public override Tensor forward(Tensor q, Tensor kv, Tensor mask)
    {
        using var a = multi_head_attention.forward(q, kv, mask);
        return feed_forward.forward(a);
    }
}
