using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using LSVCR.Data;

namespace LSVCR.Embeddings;

/// <summary>
/// Encodes every video title and comment text of a catalogue into <c>photo_embs.npy</c> / <c>comment_embs.npy</c>
/// (row = internal id, row 0 = zeros) plus <c>embeddings.json</c>.
/// <para>
/// Each distinct text is encoded once. Distinct texts are sorted by token count (so batches pad little) and cut into
/// chunks of <see cref="EmbedOptions.ChunkSize"/>; each finished chunk is saved under
/// <c>outDir/.embed-work/&lt;key&gt;/</c>, the key hashing the dataset texts and every setting that changes the bits.
/// A killed run therefore resumes at its last completed chunk and yields byte-identical files. Outputs appear only
/// when complete: npy files via temp name + rename, the manifest last.
/// </para>
/// </summary>
public static class EmbeddingJob
{
    public const string WorkFolder = ".embed-work";

    /// <summary>
    /// Encodes every title and comment of the catalogue into outDir. When outDir already holds complete outputs for
    /// the same dataset text hash + encoder settings it returns their manifest at once (reused); a partial earlier
    /// run resumes.
    /// </summary>
    public static Task<EmbeddingManifest> RunAsync(Catalog catalog, string outDir, EmbedOptions options,
        IProgress<JobProgress>? progress = null, CancellationToken ct = default) =>
        Task.Run(() => Run(catalog, outDir, options, progress, ct), ct);

    /// <summary>SHA-256 over the titles and comment texts in internal-id order (length-prefixed, so boundaries count).</summary>
    public static string DatasetHash(Catalog catalog)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var length = new byte[4];
        void Add(string text)
        {
            var bytes = Encoding.UTF8.GetBytes(text);
            System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(length, bytes.Length);
            hash.AppendData(length);
            hash.AppendData(bytes);
        }
        Add($"photos {catalog.PhotoCount} comments {catalog.CommentCount}");
        for (int p = 1; p < catalog.PhotoCount; p++) Add(catalog.PhotoTitles[p]);
        for (int c = 1; c < catalog.CommentCount; c++) Add(catalog.CommentTexts[c]);
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    private static EmbeddingManifest Run(Catalog catalog, string outDir, EmbedOptions options, IProgress<JobProgress>? progress, CancellationToken ct)
    {
        var clock = Stopwatch.StartNew();
        var source = TextEmbedder.Resolve(options);
        var datasetHash = DatasetHash(catalog);
        Directory.CreateDirectory(outDir);
        // "" and null both mean no instruction; one spelling keeps reuse and the work-folder key stable.
        if (options.Instruction == "") options = options with { Instruction = null };
        if (TryReuse(outDir, catalog, datasetHash, source.Fingerprint, options.Instruction) is { } reused)
            return reused with { Reused = true };

        using var embedder = TextEmbedder.Open(source, options);
        int dim = embedder.Dimension;
        var key = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(
            $"{datasetHash}|{source.Fingerprint}|{options.Instruction}|{options.ChunkSize}|{options.BatchSize}|{dim}")))[..16];
        var work = Path.Combine(outDir, WorkFolder, key);
        Directory.CreateDirectory(work);

        // Rows 1.. of both matrices as one list: photo p → p-1, comment c → photos + c-1.
        int photos = catalog.PhotoCount - 1, comments = catalog.CommentCount - 1, rows = photos + comments;
        var distinctOf = new int[rows];
        var index = new Dictionary<string, int>(StringComparer.Ordinal);
        var distinct = new List<string>();
        var prefix = options.Instruction ?? "";
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
        index.Clear();

        int u = distinct.Count;
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
        var position = new int[u];
        for (int i = 0; i < u; i++) position[order[i]] = i;

        int chunkSize = options.ChunkSize, chunks = (u + chunkSize - 1) / chunkSize;
        // CSR: output rows grouped by the chunk holding their text, to scatter each chunk as it completes.
        var chunkStart = new int[chunks + 1];
        foreach (int d in distinctOf) chunkStart[position[d] / chunkSize + 1]++;
        for (int k = 0; k < chunks; k++) chunkStart[k + 1] += chunkStart[k];
        var rowsByChunk = new int[rows];
        var fill = chunkStart[..^1].ToArray();
        for (int g = 0; g < rows; g++) rowsByChunk[fill[position[distinctOf[g]] / chunkSize]++] = g;

        var photoMatrix = new FloatMatrix(new float[(long)catalog.PhotoCount * dim], catalog.PhotoCount, dim);
        var commentMatrix = new FloatMatrix(new float[(long)catalog.CommentCount * dim], catalog.CommentCount, dim);
        int resumed = 0;
        long done = 0;
        var encodeClock = Stopwatch.StartNew();
        long encoded = 0;
        var progressGate = new Lock();
        progress?.Report(new("embed", 0, u));
        for (int k = 0; k < chunks; k++)
        {
            ct.ThrowIfCancellationRequested();
            int first = k * chunkSize, n = Math.Min(chunkSize, u - first);
            var file = Path.Combine(work, $"chunk_{k:D5}.npy");
            float[]? vectors = null;
            if (File.Exists(file))
            {
                try
                {
                    var saved = Npy.Read(file);
                    if (saved.Rows == n && saved.Cols == dim) vectors = saved.Data;
                }
                catch (Exception e) when (e is NpyFormatException or IOException or EndOfStreamException) { }
                if (vectors is not null) resumed++;
            }
            if (vectors is null)
            {
                var texts = new string[n];
                for (int i = 0; i < n; i++) texts[i] = distinct[order[first + i]];
                vectors = new float[(long)n * dim];
                long chunkDone = done;
                embedder.EncodeInto(texts, vectors, options.BatchSize, ct, count =>
                {
                    // Workers finish batches concurrently; progress consumers need not be thread-safe.
                    lock (progressGate)
                    {
                        chunkDone += count;
                        encoded += count;
                        progress?.Report(new("embed", chunkDone, u, $"{encoded / Math.Max(encodeClock.Elapsed.TotalSeconds, 1e-3):F0} texts/s"));
                    }
                });
                Npy.Write(file, new FloatMatrix(vectors, n, dim));
            }
            for (int r = chunkStart[k]; r < chunkStart[k + 1]; r++)
            {
                int g = rowsByChunk[r];
                var vector = vectors.AsSpan((position[distinctOf[g]] - first) * dim, dim);
                vector.CopyTo(g < photos ? photoMatrix.Row(g + 1) : commentMatrix.Row(g - photos + 1));
            }
            done += n;
            progress?.Report(new("embed", done, u, $"chunk {k + 1}/{chunks}{(resumed > 0 ? $", {resumed} resumed" : "")}"));
        }

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
            Dimension = dim,
            Instruction = options.Instruction,
            MaxTokens = embedder.MaxTokens,
            DatasetHash = datasetHash,
            Photos = catalog.PhotoCount,
            Comments = catalog.CommentCount,
            DistinctTexts = u,
            PhotoSha256 = ContentHash.OfFile(Path.Combine(outDir, EmbeddingManifest.PhotoFile)),
            CommentSha256 = ContentHash.OfFile(Path.Combine(outDir, EmbeddingManifest.CommentFile)),
            Chunks = chunks,
            ChunksResumed = resumed,
            Device = embedder.DeviceUsed,
            Warnings = embedder.Warnings.ToArray(),
            ElapsedSeconds = Math.Round(clock.Elapsed.TotalSeconds, 3),
            CreatedUtc = DateTime.UtcNow,
        };
        manifest.Write(outDir);
        progress?.Report(new("write", 3, 3));
        TryDelete(Path.Combine(outDir, WorkFolder));
        return manifest;
    }

    private static EmbeddingManifest? TryReuse(string outDir, Catalog catalog, string datasetHash, string fingerprint, string? instruction)
    {
        if (!File.Exists(Path.Combine(outDir, EmbeddingManifest.FileName))) return null;
        EmbeddingManifest manifest;
        try { manifest = EmbeddingManifest.Read(outDir); }
        catch (LsvcrException) { return null; }
        if (manifest.DatasetHash != datasetHash || manifest.EncoderFingerprint != fingerprint || manifest.Instruction != instruction
            || manifest.Photos != catalog.PhotoCount || manifest.Comments != catalog.CommentCount)
            return null;
        try
        {
            if (Npy.ReadShape(Path.Combine(outDir, EmbeddingManifest.PhotoFile)) != (catalog.PhotoCount, manifest.Dimension)) return null;
            if (Npy.ReadShape(Path.Combine(outDir, EmbeddingManifest.CommentFile)) != (catalog.CommentCount, manifest.Dimension)) return null;
            // Keyed by content: files changed since they were written are encoded again, not trusted by their shape.
            if (manifest.PhotoSha256 != ContentHash.OfFile(Path.Combine(outDir, EmbeddingManifest.PhotoFile))
                || manifest.CommentSha256 != ContentHash.OfFile(Path.Combine(outDir, EmbeddingManifest.CommentFile))) return null;
        }
        catch (Exception e) when (e is NpyFormatException or IOException or EndOfStreamException) { return null; }
        return manifest;
    }

    private static void TryDelete(string dir)
    {
        try { if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true); }
        catch (IOException) { }
    }
}
