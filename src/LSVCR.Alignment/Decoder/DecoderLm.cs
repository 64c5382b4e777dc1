using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LSVCR.Alignment.Decoder;

/// <summary>
/// A Llama/Qwen2-style causal LM: embed_tokens → pre-norm layers (RMSNorm, rotary GQA, SwiGLU) → norm; lm_head maps the
/// final hidden states to next-token logits (tied to embed_tokens when the config says so). Parameter names are
/// Hugging Face's without the <c>model.</c> prefix, so a checkpoint loads by stripping it (<see cref="HfDecoderFolder"/>).
/// </summary>
public sealed class DecoderLm : TextBackbone
{
#pragma warning disable IDE1006
    private readonly Embedding embed_tokens;
    private readonly ModuleList<DecoderLayer> layers;
    private readonly RmsNorm norm;
    private readonly Parameter? lm_head;
#pragma warning restore IDE1006
    private readonly BackboneTokenizer _tokenizer;

    public DecoderLm(DecoderConfig config, BackboneTokenizer tokenizer) : base("decoder")
    {
        config.Validate("decoder config");
        Config = config;
        _tokenizer = tokenizer;
        embed_tokens = nn.Embedding(config.VocabSize, config.Hidden);
        layers = nn.ModuleList(Enumerable.Range(0, config.Layers).Select(_ => new DecoderLayer(config)).ToArray());
        norm = new RmsNorm(config.Hidden, config.RmsNormEps, "norm");
        if (!config.TieWordEmbeddings) lm_head = new Parameter(empty(config.VocabSize, config.Hidden));
        RegisterComponents();
        using var _ = no_grad();
        foreach (var (name, p) in named_parameters())
            if (!name.EndsWith("norm.weight") && !name.EndsWith("layernorm.weight")) nn.init.normal_(p, 0, 0.02);
    }

    public DecoderConfig Config { get; }
    public override string Kind => "decoder:" + Config.ModelType;
    public override int HiddenSize => Config.Hidden;
    public override int MaxTokens => Config.MaxPositions;
    public override BackboneTokenizer Tokenizer => _tokenizer;
    public override bool HasLmHead => true;
    public override bool IsCausal => true;

    /// <summary>Per layer and token: q/k/v/o (H·(2·Hq + 2·Hkv)) and SwiGLU (3·H·I) multiply-adds, attention 2·width·Hq;
    /// the lm head (V·H) is counted by the caller where it runs.</summary>
    public override double ForwardFlops(long rows, long width)
    {
        var c = Config;
        double h = c.Hidden, q = c.Heads * c.HeadDim, kv = c.KvHeads * c.HeadDim;
        return 2.0 * c.Layers * rows * width * (h * (2 * q + 2 * kv) + 3 * h * c.Intermediate + 2 * width * q);
    }

    public override Tensor forward(Tensor ids, Tensor mask)
    {
        using var scope = NewDisposeScope();
        var (b, t) = (ids.shape[0], ids.shape[1]);
        var h = embed_tokens.forward(ids);
        var (cos, sin) = RotaryEmbedding.Table((int)t, Config.HeadDim, Config.RopeTheta, h.device, h.dtype);
        // Key j visible to query i iff j ≤ i and j is a token (sequences are right-padded).
        var visible = ones(t, t, dtype: ScalarType.Bool, device: h.device).tril().unsqueeze(0)
            .logical_and(mask.ne(0).unsqueeze(1)).unsqueeze(1);
        var additive = zeros(b, 1, t, t, dtype: h.dtype, device: h.device).masked_fill(visible.logical_not(), float.MinValue / 2);
        foreach (var layer in layers) h = layer.forward(h, cos, sin, additive);
        return norm.forward(h).MoveToOuterDisposeScope();
    }

    public override Tensor LmLogits(Tensor hidden) => F.linear(hidden, lm_head ?? embed_tokens.weight!);

    /// <summary>Copies HF-named weights (with or without <c>model.</c>) into the module; every base parameter must be present.</summary>
    public void Load(IReadOnlyDictionary<string, Tensor> weights, string source)
    {
        var byName = new Dictionary<string, Tensor>();
        foreach (var (key, value) in weights)
        {
            var name = key.StartsWith("model.") ? key["model.".Length..] : key;
            if (name == "lm_head.weight") name = "lm_head";
            byName[name] = value;
        }
        using var _ = no_grad();
        foreach (var (name, p) in named_parameters())
        {
            if (name.EndsWith(".lora_A") || name.EndsWith(".lora_B")) continue;
            if (!byName.TryGetValue(name, out var w))
                throw new LsvcrException($"{source}: no weight for {(name == "lm_head" ? "lm_head.weight" : "model." + name)}" +
                                         (name == "lm_head" ? " (set tie_word_embeddings if the head shares embed_tokens)" : ""));
            if (!w.shape.SequenceEqual(p.shape))
                throw new LsvcrException($"{source}: {name} has shape [{string.Join(", ", w.shape)}], config.json implies [{string.Join(", ", p.shape)}]");
            p.copy_(w.to(p.dtype, p.device));
        }
    }
}
