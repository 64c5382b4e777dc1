using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using LSVCR.Data;

namespace LSVCR.Embeddings;

/// <summary>
/// Encodes every video title and comment text of a catalogue into <c>photo_embs.npy</c> / <c>comment_embs.npy</c>
/// (row = internal id, row 0 = zeros) plus <c>embeddings.json</c>.
/// <para>
/// Each distinct text is encoded once. The texts are cut into chunks by <see cref="EmbeddingPlan"/>; each finished
/// chunk is saved under <c>outDir/.embed-work/&lt;key&gt;/</c>, the key hashing the dataset texts and every setting
/// that changes the bits. A killed run therefore resumes at its last completed chunk and yields byte-identical files.
/// Outputs appear only when complete: npy files via temp name + rename, the manifest last. The distributed suite runs
/// the same plan with one message per chunk (LSVCR.Jobs' EmbeddingsJobService), and assembles the same bytes.
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
        var plan = EmbeddingPlan.Create(catalog, embedder, options, progress, ct);
        var work = Path.Combine(outDir, WorkFolder, plan.Key);
        Directory.CreateDirectory(work);

        var assembly = plan.StartAssembly(catalog);
        int resumed = 0, u = plan.DistinctTexts;
        long done = 0;
        var encodeClock = Stopwatch.StartNew();
        long encoded = 0;
        var progressGate = new Lock();
        progress?.Report(new("embed", 0, u));
        for (int k = 0; k < plan.Chunks; k++)
        {
            ct.ThrowIfCancellationRequested();
            var (_, n) = plan.Range(k);
            var file = Path.Combine(work, $"chunk_{k:D5}.npy");
            float[]? vectors = plan.TryReadChunk(file, k);
            if (vectors is not null) resumed++;
            else
            {
                long chunkDone = done;
                vectors = plan.Encode(embedder, k, ct, count =>
                {
                    // Workers finish batches concurrently; progress consumers need not be thread-safe.
                    lock (progressGate)
                    {
                        chunkDone += count;
                        encoded += count;
                        progress?.Report(new("embed", chunkDone, u, $"{encoded / Math.Max(encodeClock.Elapsed.TotalSeconds, 1e-3):F0} texts/s"));
                    }
                });
                plan.WriteChunk(file, k, vectors);
            }
            assembly.Add(k, vectors);
            done += n;
            progress?.Report(new("embed", done, u, $"chunk {k + 1}/{plan.Chunks}{(resumed > 0 ? $", {resumed} resumed" : "")}"));
        }

        var manifest = assembly.Write(outDir, embedder, resumed, clock.Elapsed, progress);
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
