using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using LSVCR.Data;

namespace LSVCR.Embeddings;

/// <summary>
/// How a catalogue's texts are cut into chunks: every distinct text (after the instruction prefix) once, sorted by
/// token count (so batches pad little; ties in first-seen order, so every process cuts the same chunks), then
/// <see cref="EmbedOptions.ChunkSize"/> texts per chunk. One plan serves <c>lsvcr embed</c>, which encodes the chunks
/// one after another, and the distributed suite, where any number of Embeddings instances each encode some chunks
/// from the saved plan; both assemble the same bytes through <see cref="StartAssembly"/>.
/// </summary>
public sealed class EmbeddingPlan
{
    private readonly string[] distinct;
    private readonly int[] distinctOf; // output row (photos 1.., then comments 1..) → distinct text
    private readonly int[] order;      // position in the sorted list → distinct text
    private readonly int photos;

    private EmbeddingPlan(string[] distinct, int[] distinctOf, int[] order, int photos, string? instruction, string datasetHash, string key, int chunkSize, int batchSize, int dimension)
    {
        Instruction = instruction;
        this.distinct = distinct;
        this.distinctOf = distinctOf;
        this.order = order;
        this.photos = photos;
        DatasetHash = datasetHash;
        Key = key;
        ChunkSize = chunkSize;
        BatchSize = batchSize;
        Dimension = dimension;
        Chunks = (distinct.Length + chunkSize - 1) / chunkSize;
    }

    /// <summary>SHA-256 of the dataset's texts (<see cref="EmbeddingJob.DatasetHash"/>).</summary>
    public string DatasetHash { get; }
    /// <summary>16 hex digits over the dataset texts, encoder fingerprint, instruction, chunk and batch size and dimension.</summary>
    public string Key { get; }
    public int ChunkSize { get; }
    public int BatchSize { get; }
    public int Dimension { get; }
    public int Chunks { get; }
    public int DistinctTexts => distinct.Length;
    /// <summary>The prefix put before every text (null = none).</summary>
    public string? Instruction { get; }

    /// <summary>First sorted position and text count of chunk <paramref name="k"/>.</summary>
    public (int First, int Count) Range(int k)
    {
        if (k < 0 || k >= Chunks) throw new LsvcrException($"chunk {k} is outside the plan's {Chunks} chunks");
        int first = k * ChunkSize;
        return (first, Math.Min(ChunkSize, distinct.Length - first));
    }

    /// <summary>Plans the catalogue's texts for <paramref name="embedder"/> (tokenizes every distinct text once).</summary>
    public static EmbeddingPlan Create(Catalog catalog, TextEmbedder embedder, EmbedOptions options, IProgress<JobProgress>? progress = null,
        CancellationToken ct = default)
    {
        var instruction = string.IsNullOrEmpty(options.Instruction) ? null : options.Instruction;
        var (distinct, distinctOf) = Distinct(catalog, instruction);
        int u = distinct.Length;
        var lengths = new int[u];
        for (int d = 0; d < u; d++)
        {
            lengths[d] = embedder.TokenCount(distinct[d]);
            if (d % 8192 == 0)
            {
                ct.ThrowIfCancellationRequested();
                progress?.Report(new("tokenize", d, u));
            }
        }
        progress?.Report(new("tokenize", u, u));
        var order = Enumerable.Range(0, u).ToArray();
        // Stable on ties (index order) so every run cuts the same chunks.
        Array.Sort(order, (a, b) => lengths[a] != lengths[b] ? lengths[a].CompareTo(lengths[b]) : a.CompareTo(b));
        var datasetHash = EmbeddingJob.DatasetHash(catalog);
        var key = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(
            $"{datasetHash}|{embedder.Fingerprint}|{instruction}|{options.ChunkSize}|{options.BatchSize}|{embedder.Dimension}")))[..16];
        return new EmbeddingPlan(distinct, distinctOf, order, catalog.PhotoCount - 1, instruction, datasetHash, key, options.ChunkSize, options.BatchSize, embedder.Dimension);
    }

    private static (string[] Distinct, int[] DistinctOf) Distinct(Catalog catalog, string? instruction)
    {
        int photos = catalog.PhotoCount - 1, rows = photos + catalog.CommentCount - 1;
        var distinctOf = new int[rows];
        var index = new Dictionary<string, int>(StringComparer.Ordinal);
        var distinct = new List<string>();
        var prefix = instruction ?? "";
        for (int g = 0; g < rows; g++)
        {
            var text = prefix + (g < photos ? catalog.PhotoTitles[g + 1] : catalog.CommentTexts[g - photos + 1]);
            if (!index.TryGetValue(text, out int d))
            {
                index.Add(text, d = distinct.Count);
                distinct.Add(text);
            }
            distinctOf[g] = d;
        }
        return (distinct.ToArray(), distinctOf);
    }

    /// <summary>Encodes chunk <paramref name="k"/>: <c>Count × Dimension</c> floats in sorted order.</summary>
    public float[] Encode(TextEmbedder embedder, int k, CancellationToken ct = default, Action<int>? batchDone = null)
    {
        if (embedder.Dimension != Dimension) throw new LsvcrException($"the encoder gives {embedder.Dimension} dimensions, the plan {Dimension}");
        var (first, n) = Range(k);
        var texts = new string[n];
        for (int i = 0; i < n; i++) texts[i] = distinct[order[first + i]];
        var vectors = new float[(long)n * Dimension];
        embedder.EncodeInto(texts, vectors, BatchSize, ct, batchDone);
        return vectors;
    }

    public void WriteChunk(string file, int k, float[] vectors) => Npy.Write(file, new FloatMatrix(vectors, Range(k).Count, Dimension));

    /// <summary>A saved chunk's vectors, or null when the file is missing, damaged or of another shape.</summary>
    public float[]? TryReadChunk(string file, int k)
    {
        if (!File.Exists(file)) return null;
        try
        {
            var saved = Npy.Read(file);
            return saved.Rows == Range(k).Count && saved.Cols == Dimension ? saved.Data : null;
        }
        catch (Exception e) when (e is NpyFormatException or IOException or EndOfStreamException) { return null; }
    }

    /// <summary>Saves the plan (its key, sizes and the sorted order) so other processes encode the same chunks.</summary>
    public void Save(string file) => File.WriteAllText(file, JsonSerializer.Serialize(
        new Saved(Key, DatasetHash, ChunkSize, BatchSize, Dimension, order), EmbeddingManifest.Json));

    /// <summary>Reads a plan <see cref="Save"/> wrote for this catalogue and these options; anything else is an error.</summary>
    public static EmbeddingPlan Load(string file, Catalog catalog, EmbedOptions options)
    {
        Saved saved;
        try { saved = JsonSerializer.Deserialize<Saved>(File.ReadAllText(file), EmbeddingManifest.Json) ?? throw new JsonException("empty"); }
        catch (JsonException e) { throw new LsvcrException($"{file}: invalid embedding plan ({e.Message})", e); }
        var datasetHash = EmbeddingJob.DatasetHash(catalog);
        if (saved.DatasetHash != datasetHash) throw new LsvcrException($"{file}: the plan is for other dataset texts ({saved.DatasetHash[..12]}…, these are {datasetHash[..12]}…)");
        if (saved.ChunkSize != options.ChunkSize || saved.BatchSize != options.BatchSize)
            throw new LsvcrException($"{file}: the plan has chunk size {saved.ChunkSize} and batch size {saved.BatchSize}, the options {options.ChunkSize} and {options.BatchSize}");
        var instruction = string.IsNullOrEmpty(options.Instruction) ? null : options.Instruction;
        var (distinct, distinctOf) = Distinct(catalog, instruction);
        if (saved.Order.Length != distinct.Length || saved.Order.Any(d => (uint)d >= (uint)distinct.Length))
            throw new LsvcrException($"{file}: the plan orders {saved.Order.Length} texts, the catalogue has {distinct.Length} distinct texts");
        return new EmbeddingPlan(distinct, distinctOf, saved.Order, catalog.PhotoCount - 1, instruction, datasetHash, saved.Key, saved.ChunkSize, saved.BatchSize, saved.Dimension);
    }

    private sealed record Saved(string Key, string DatasetHash, int ChunkSize, int BatchSize, int Dimension, int[] Order);

    /// <summary>Starts the two output matrices (row 0 stays zeros); chunks may be added in any order.</summary>
    public EmbeddingAssembly StartAssembly(Catalog catalog) => new(this, catalog);

    /// <summary>The photo and comment matrices filled chunk by chunk, then written with <c>embeddings.json</c> last.</summary>
    public sealed class EmbeddingAssembly
    {
        private readonly EmbeddingPlan plan;
        private readonly FloatMatrix photoMatrix, commentMatrix;
        private readonly int[] position;          // distinct text → sorted position
        private readonly int[] chunkStart, rowsByChunk; // CSR: output rows grouped by the chunk holding their text
        private readonly bool[] added;

        internal EmbeddingAssembly(EmbeddingPlan plan, Catalog catalog)
        {
            this.plan = plan;
            int dim = plan.Dimension, u = plan.DistinctTexts, rows = plan.distinctOf.Length;
            photoMatrix = new FloatMatrix(new float[(long)catalog.PhotoCount * dim], catalog.PhotoCount, dim);
            commentMatrix = new FloatMatrix(new float[(long)catalog.CommentCount * dim], catalog.CommentCount, dim);
            position = new int[u];
            for (int i = 0; i < u; i++) position[plan.order[i]] = i;
            chunkStart = new int[plan.Chunks + 1];
            foreach (int d in plan.distinctOf) chunkStart[position[d] / plan.ChunkSize + 1]++;
            for (int k = 0; k < plan.Chunks; k++) chunkStart[k + 1] += chunkStart[k];
            rowsByChunk = new int[rows];
            var fill = chunkStart[..^1].ToArray();
            for (int g = 0; g < rows; g++) rowsByChunk[fill[position[plan.distinctOf[g]] / plan.ChunkSize]++] = g;
            added = new bool[plan.Chunks];
        }

        public void Add(int k, float[] vectors)
        {
            var (first, n) = plan.Range(k);
            int dim = plan.Dimension;
            if (vectors.Length != (long)n * dim) throw new LsvcrException($"chunk {k}: {vectors.Length} floats, expected {n} × {dim}");
            for (int r = chunkStart[k]; r < chunkStart[k + 1]; r++)
            {
                int g = rowsByChunk[r];
                var vector = vectors.AsSpan((position[plan.distinctOf[g]] - first) * dim, dim);
                vector.CopyTo(g < plan.photos ? photoMatrix.Row(g + 1) : commentMatrix.Row(g - plan.photos + 1));
            }
            added[k] = true;
        }

        /// <summary>Writes <c>photo_embs.npy</c>, <c>comment_embs.npy</c> and then <c>embeddings.json</c> into <paramref name="outDir"/>.</summary>
        public EmbeddingManifest Write(string outDir, TextEmbedder embedder, int resumed, TimeSpan elapsed, IProgress<JobProgress>? progress = null)
        {
            if (Array.IndexOf(added, false) is var missing and >= 0) throw new LsvcrException($"chunk {missing} of {plan.Chunks} was never added");
            progress?.Report(new("write", 0, 3));
            // An older manifest must not vouch for the new npy files while they are being replaced.
            File.Delete(Path.Combine(outDir, EmbeddingManifest.FileName));
            Npy.Write(Path.Combine(outDir, EmbeddingManifest.PhotoFile), photoMatrix);
            progress?.Report(new("write", 1, 3));
            Npy.Write(Path.Combine(outDir, EmbeddingManifest.CommentFile), commentMatrix);
            progress?.Report(new("write", 2, 3));
            var manifest = new EmbeddingManifest
            {
                Encoder = embedder.EncoderId,
                EncoderFingerprint = embedder.Fingerprint,
                Dimension = plan.Dimension,
                Instruction = plan.Instruction,
                MaxTokens = embedder.MaxTokens,
                DatasetHash = plan.DatasetHash,
                Photos = photoMatrix.Rows,
                Comments = commentMatrix.Rows,
                DistinctTexts = plan.DistinctTexts,
                PhotoSha256 = ContentHash.OfFile(Path.Combine(outDir, EmbeddingManifest.PhotoFile)),
                CommentSha256 = ContentHash.OfFile(Path.Combine(outDir, EmbeddingManifest.CommentFile)),
                Chunks = plan.Chunks,
                ChunksResumed = resumed,
                Device = embedder.DeviceUsed,
                Warnings = embedder.Warnings.ToArray(),
                ElapsedSeconds = Math.Round(elapsed.TotalSeconds, 3),
                CreatedUtc = DateTime.UtcNow,
            };
            manifest.Write(outDir);
            progress?.Report(new("write", 3, 3));
            return manifest;
        }
    }
}
