using TorchSharp;
using static TorchSharp.torch;

namespace LSVCR.Alignment;

/// <summary>
/// The LLM of stage 1 (MODEL.md §3): token ids [B, T] and an attention mask [B, T] (1 = token, 0 = pad) → last hidden
/// states [B, T, H]. Encoders (MiniLM) have no next-token head, so their <c>lm</c> loss term is absent; decoders
/// (<see cref="Decoder.DecoderLm"/>) have one.
/// </summary>
public abstract class TextBackbone : nn.Module<Tensor, Tensor, Tensor>
{
    protected TextBackbone(string name) : base(name) { }

    /// <summary>"minilm" or "decoder:&lt;model_type&gt;".</summary>
    public abstract string Kind { get; }
    public abstract int HiddenSize { get; }
    /// <summary>Longest sequence (tokens, framing included) the backbone accepts.</summary>
    public abstract int MaxTokens { get; }
    public abstract BackboneTokenizer Tokenizer { get; }
    public virtual bool HasLmHead => false;
    /// <summary>Attends only to earlier tokens (decoders): the last prompt token has read the whole prompt.</summary>
    public virtual bool IsCausal => false;

    /// <summary>Multiply-adds × 2 of one forward over [rows, width] tokens (dense projections and attention), for benchmarks.</summary>
    public abstract double ForwardFlops(long rows, long width);

    /// <summary>Next-token logits [B, T, V] from hidden states; only when <see cref="HasLmHead"/>.</summary>
    public virtual Tensor LmLogits(Tensor hidden) =>
        throw new NotSupportedException($"{Kind} is an encoder: it has no next-token head (its lm loss term is absent)");
}

/// <summary>A backbone's tokenizer and sequence framing: BERT wraps a text in [CLS] … [SEP]; decoders prefix BOS (if any).</summary>
public abstract class BackboneTokenizer
{
    /// <summary>Token ids of <paramref name="text"/> without framing tokens.</summary>
    public abstract int[] Encode(string text);
    public abstract int PadId { get; }
    public abstract IReadOnlyList<int> Prefix { get; }
    public abstract IReadOnlyList<int> Suffix { get; }
}
