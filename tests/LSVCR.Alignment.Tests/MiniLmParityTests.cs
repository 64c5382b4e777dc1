using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using LSVCR.Alignment.MiniLm;
using LSVCR.Embeddings;
using static TorchSharp.torch;

namespace LSVCR.Alignment.Tests;

/// <summary>The TorchSharp rebuild of all-MiniLM-L6-v2 against ONNX Runtime running the same model (the embedder).</summary>
public class MiniLmParityTests
{
    internal static readonly string[] Texts =
    [
        "crispy homemade ramen", "stunning last-minute goal in the derby", "Sleepy tabby kitten NAPPING on the cat tree",
        "lol this is so true", "Hello, World! Is this (really) the best one?", "I watched this 3 times... still can't believe the plot twist",
        "budget backpacking: hidden waterfall & night market", "a", "Crème brûlée, 中国 and 😺",
        string.Join(' ', Enumerable.Repeat("an upbeat acoustic guitar riff", 20)),
    ];

    private static readonly Lazy<BertEncoder> Shared = new(() => BertEncoder.MiniLm());
    internal static BertEncoder MiniLm => Shared.Value;

    [Fact]
    public void Mean_pooled_vectors_equal_onnx_runtime()
    {
        using var embedder = TextEmbedder.Open(new EmbedOptions { Threads = 1, BatchSize = 4 });
        var expected = embedder.Encode(Texts);
        var encoder = MiniLm;
        encoder.eval();
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var (ids, mask) = Batch(encoder.Tokenizer, Texts);
        var hidden = encoder.forward(ids, mask);
        Assert.Equal(new long[] { Texts.Length, ids.shape[1], 384 }, hidden.shape);
        var m = mask.unsqueeze(-1).to(ScalarType.Float32);
        var pooled = nn.functional.normalize(hidden.mul(m).sum(1).div(m.sum(1)), dim: -1);
        for (int i = 0; i < Texts.Length; i++)
        {
            var ours = pooled[i].data<float>().ToArray();
            var cosine = TensorPrimitives.CosineSimilarity(ours, expected[i]);
            Assert.True(cosine >= 0.99999f, $"cosine {cosine} for '{Texts[i]}'");
        }
    }

    [Fact]
    public void Reads_the_minilm_shape_from_the_onnx_graph()
    {
        var c = MiniLm.Config;
        Assert.Equal((30522, 384, 6, 12, 1536, 512), (c.VocabSize, c.Hidden, c.Layers, c.Heads, c.Intermediate, c.MaxPositions));
        // 6 projections × 6 layers, weights [out, in] as PyTorch (the ONNX MatMul operands are [in, out]).
        var names = MiniLm.named_parameters().Select(p => p.name).ToHashSet();
        Assert.Contains("layer.5.intermediate.weight", names);
        Assert.Equal(new long[] { 1536, 384 }, MiniLm.named_parameters().Single(p => p.name == "layer.0.intermediate.weight").parameter.shape);
    }

    [Fact]
    public void Rejects_bytes_that_are_not_an_onnx_model()
    {
        var e = Assert.Throws<LsvcrException>(() => OnnxBertWeights.Read([1, 2, 3, 4, 5], "junk.onnx"));
        Assert.Contains("junk.onnx", e.Message);
    }

    /// <summary>[CLS] text [SEP] per text, right-padded: ids and mask [B, T] int64.</summary>
    internal static (Tensor Ids, Tensor Mask) Batch(BackboneTokenizer tok, IReadOnlyList<string> texts)
    {
        var rows = texts.Select(t => tok.Prefix.Concat(tok.Encode(t)).Concat(tok.Suffix).Select(i => (long)i).ToArray()).ToArray();
        int width = rows.Max(r => r.Length);
        var ids = new long[rows.Length * width];
        var mask = new long[rows.Length * width];
        for (int i = 0; i < rows.Length; i++)
        {
            rows[i].CopyTo(ids, i * width);
            Array.Fill(mask, 1L, i * width, rows[i].Length);
        }
        return (tensor(ids, rows.Length, width), tensor(mask, rows.Length, width));
    }
}
