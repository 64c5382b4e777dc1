using LSVCR.Alignment.Lora;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LSVCR.Alignment.MiniLm;

/// <summary>
/// One post-norm BERT layer: self-attention (query/key/value, attention_output, LayerNorm on the residual), then the
/// feed-forward (intermediate, GELU erf, output, LayerNorm on the residual). The six projections are
/// <see cref="LoraLinear"/>s, the LoRA targets.
/// </summary>
internal sealed class BertLayer : nn.Module<Tensor, Tensor, Tensor>
{
#pragma warning disable IDE1006
    private readonly LoraLinear query;
    private readonly LoraLinear key;
    private readonly LoraLinear value;
    private readonly LoraLinear attention_output;
    private readonly LayerNorm attention_norm;
    private readonly LoraLinear intermediate;
    private readonly LoraLinear output;
    private readonly LayerNorm output_norm;
#pragma warning restore IDE1006
    private readonly int _heads;
    private readonly double _hiddenDropout;
    private readonly double _attentionDropout;

    public BertLayer(BertConfig c) : base("layer")
    {
        query = new LoraLinear(c.Hidden, c.Hidden, true, "query");
        key = new LoraLinear(c.Hidden, c.Hidden, true, "key");
        value = new LoraLinear(c.Hidden, c.Hidden, true, "value");
        attention_output = new LoraLinear(c.Hidden, c.Hidden, true, "attention_output");
        attention_norm = nn.LayerNorm(c.Hidden, c.LayerNormEps);
        intermediate = new LoraLinear(c.Hidden, c.Intermediate, true, "intermediate");
        output = new LoraLinear(c.Intermediate, c.Hidden, true, "output");
        output_norm = nn.LayerNorm(c.Hidden, c.LayerNormEps);
        _heads = c.Heads;
        _hiddenDropout = c.HiddenDropout;
        _attentionDropout = c.AttentionDropout;
        RegisterComponents();
    }

    /// <param name="x">[B, T, H]</param>
    /// <param name="mask">additive [B, 1, 1, T] (0 = token, −10000 = pad, as the ONNX graph)</param>
    public override Tensor forward(Tensor x, Tensor mask)
    {
        using var scope = NewDisposeScope();
        var (b, t, h) = (x.shape[0], x.shape[1], x.shape[2]);
        var dh = h / _heads;
        Tensor Heads(Tensor y) => y.view(b, t, _heads, dh).transpose(1, 2);
        var ctx = F.scaled_dot_product_attention(Heads(query.forward(x)), Heads(key.forward(x)), Heads(value.forward(x)),
            mask, training ? _attentionDropout : 0);
        var attn = F.dropout(attention_output.forward(ctx.transpose(1, 2).reshape(b, t, h)), _hiddenDropout, training);
        var a = attention_norm.forward(attn.add(x));
        var ff = F.dropout(output.forward(F.gelu(intermediate.forward(a))), _hiddenDropout, training);
        return output_norm.forward(ff.add(a)).MoveToOuterDisposeScope();
    }
}
