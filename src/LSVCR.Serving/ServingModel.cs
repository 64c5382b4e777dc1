using System.Diagnostics;
using System.Text.Json;
using LSVCR.Data;
using Microsoft.ML.OnnxRuntime;

namespace LSVCR.Serving;

/// <summary>A user's histories in internal ids, already cut to the model's window (most recent entries kept).</summary>
public sealed record UserHistory(int[] Videos, int[] EntryVideos, int[][] EntryComments)
{
    public bool IsEmpty => Videos.Length == 0 && EntryVideos.Length == 0;
}

/// <summary>
/// One loaded serving bundle: the two ONNX Runtime sessions, the candidate tables and the id maps. Thread-safe for
/// concurrent batches. Reference-counted (<see cref="TryAcquire"/>/<see cref="Release"/>) so a swapped-out model is
/// disposed only after the last request that started on it has finished.
/// </summary>
public sealed class ServingModel : IDisposable
{
    private readonly InferenceSession _rec;
    private readonly InferenceSession _commRank;
    private readonly OrtValue _recCommentTable, _recCommentScale, _commentTable, _commentScale;
    private readonly RunOptions _runOptions = new();
    private int _refs = 1; // the engine's own reference while the model is current
    private int _disposed;

    public BundleManifest Manifest { get; }
    public string Version => Manifest.ModelVersion;
    public string Directory { get; }
    public DateTimeOffset LoadedAt { get; private set; }
    public TimeSpan LoadTime { get; private set; }
    public int Hidden { get; }
    public int VideoCount { get; }   // including pad row 0
    public int CommentCount { get; }
    public float InverseTemperature { get; }
    public string[] VideoIds { get; }
    public string[] CommentIds { get; }
    public IReadOnlyDictionary<string, int> VideoIndex { get; }
    public IReadOnlyDictionary<string, int> CommentIndex { get; }
    public int[] CommentOffsets { get; }
    public int[] VideoComments { get; }
    /// <summary>Internal video ids, most popular first, and their popularity (Rec training-target count).</summary>
    public int[] Popular { get; }
    public float[] PopularityScore { get; }

    private ServingModel(string dir, BundleManifest manifest, SessionOptions options, ServingModel? catalogueFrom)
    {
        var sw = Stopwatch.StartNew();
        Directory = dir;
        Manifest = manifest;
        string P(string name) => Path.Combine(dir, name);
        // The video vectors live in the Rec graph (packed once for the GEMM); the file gives the catalogue shape.
        var video = Npy.ReadShape(P(BundleFiles.VideoVectors));
        // The big tables go to native memory (ONNX Runtime's allocator), read straight from the files: no managed
        // arrays of hundreds of MB, so loading a bundle during a swap adds no GC work for the request threads, and a
        // retired model frees them at once on Dispose.
        try
        {
            _commentTable = ReadNative(P(BundleFiles.CommentVectors), out var cRows, out var cCols);
            _commentScale = ReadNative(P(BundleFiles.CommentNorms), out var nRows, out _);
            _recCommentTable = ReadNative(P(BundleFiles.RecCommentVectors), out var rRows, out var rCols);
            _recCommentScale = ReadNative(P(BundleFiles.RecCommentNorms), out var rnRows, out _);
            Hidden = video.Cols;
            VideoCount = video.Rows;
            CommentCount = cRows;
            if (manifest.Hidden != Hidden || cCols != Hidden || rCols != Hidden || rRows != CommentCount
                || nRows != CommentCount || rnRows != CommentCount || manifest.Videos != VideoCount - 1 || manifest.Comments != CommentCount - 1)
                throw new LsvcrException($"{dir}: the bundle's tables disagree with its manifest ({VideoCount}×{Hidden} videos, {CommentCount}×{cCols} comments; manifest {manifest.Videos + 1} / {manifest.Comments + 1}, hidden {manifest.Hidden})");
        }
        catch
        {
            DisposeTables();
            throw;
        }
        InverseTemperature = (float)(1 / manifest.Temperature);

        // Files whose hash equals the serving model's are that model's objects, reused: a new model of the same
        // catalogue (the usual retrain) then allocates no id maps — a million strings and a dictionary over them,
        // whose GC promotions paused the request threads during a swap.
        bool Same(string file) => catalogueFrom is not null
            && catalogueFrom.Manifest.Files.FirstOrDefault(f => f.Name == file)?.Sha256 is { } old
            && manifest.Files.FirstOrDefault(f => f.Name == file)?.Sha256 == old;
        if (Same(BundleFiles.VideoIds)) (VideoIds, VideoIndex) = (catalogueFrom!.VideoIds, catalogueFrom.VideoIndex);
        else
        {
            VideoIds = ReadJson<string[]>(P(BundleFiles.VideoIds));
            VideoIndex = Index(VideoIds, P(BundleFiles.VideoIds));
        }
        if (Same(BundleFiles.CommentIds)) (CommentIds, CommentIndex) = (catalogueFrom!.CommentIds, catalogueFrom.CommentIndex);
        else
        {
            CommentIds = ReadJson<string[]>(P(BundleFiles.CommentIds));
            CommentIndex = Index(CommentIds, P(BundleFiles.CommentIds));
        }
        if (VideoIds.Length != VideoCount || CommentIds.Length != CommentCount)
            throw new LsvcrException($"{dir}: id maps hold {VideoIds.Length} videos / {CommentIds.Length} comments, the tables {VideoCount} / {CommentCount}");
        if (Same(BundleFiles.VideoComments)) (CommentOffsets, VideoComments) = (catalogueFrom!.CommentOffsets, catalogueFrom.VideoComments);
        else
        {
            var lists = ReadJson<CommentLists>(P(BundleFiles.VideoComments));
            if (lists.Offsets.Length != VideoCount + 1 || lists.Offsets[^1] != lists.Comments.Length || lists.Comments.Any(c => c <= 0 || c >= CommentCount))
                throw new LsvcrException($"{P(BundleFiles.VideoComments)}: comment lists do not fit the catalogue");
            CommentOffsets = lists.Offsets;
            VideoComments = lists.Comments;
        }
        var popularity = ReadJson<PopularityFile>(P(BundleFiles.Popularity));
        Popular = popularity.Videos;
        PopularityScore = popularity.Counts;
        if (Popular.Length != PopularityScore.Length || Popular.Any(v => v <= 0 || v >= VideoCount))
            throw new LsvcrException($"{P(BundleFiles.Popularity)}: ranking does not fit the catalogue");

        // The tables are fed to every Run as they are (no copy); the sessions own the graphs' initializers.
        try
        {
            _rec = new InferenceSession(P(BundleFiles.RecEncoder), options);
            _commRank = new InferenceSession(P(BundleFiles.CommRankEncoder), options);
        }
        catch
        {
            _rec?.Dispose();
            DisposeTables();
            throw;
        }
        LoadTime = sw.Elapsed;
    }

    private sealed record CommentLists(int[] Offsets, int[] Comments);
    private sealed record PopularityFile(int[] Videos, float[] Counts);

    /// <summary>Verifies the bundle against its manifest, loads it and warms both graphs up (first runs allocate and
    /// plan); throws <see cref="LsvcrException"/> naming the file at fault. <paramref name="catalogueFrom"/>: the model
    /// being served, whose id maps and comment lists are reused where the new bundle's files are the same.</summary>
    public static ServingModel Load(string dir, ServingOptions options, ServingModel? catalogueFrom = null)
    {
        var sw = Stopwatch.StartNew();
        var manifest = BundleManifest.Read(dir);
        manifest.Verify(dir);
        using var so = new SessionOptions
        {
            IntraOpNumThreads = options.EffectiveIntraOpThreads, InterOpNumThreads = 1,
            ExecutionMode = ExecutionMode.ORT_SEQUENTIAL, GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
        };
        if (options.Provider == "cuda")
        {
            // Only the Microsoft.ML.OnnxRuntime.Gpu native library has the CUDA provider; the CPU package's refuses here.
            try { so.AppendExecutionProvider_CUDA(); }
            catch (Exception e) when (e is OnnxRuntimeException or EntryPointNotFoundException or DllNotFoundException)
            {
                throw new LsvcrException($"Serving:Provider is \"cuda\", but ONNX Runtime here has no CUDA provider ({e.Message.Split('\n')[0]}): " +
                                         "build the service with Microsoft.ML.OnnxRuntime.Gpu on a machine with a GPU, or set Serving:Provider to \"cpu\"", e);
            }
        }
        if (!string.IsNullOrEmpty(options.OnnxProfilePrefix))
        {
            so.ProfileOutputPathPrefix = options.OnnxProfilePrefix; // first: EnableProfiling passes the prefix on
            so.EnableProfiling = true;
        }
        ServingModel model;
        try { model = new ServingModel(dir, manifest, so, catalogueFrom); }
        catch (OnnxRuntimeException e) { throw new LsvcrException($"{dir}: ONNX Runtime cannot load the encoders ({e.Message})", e); }
        catch (Exception e) when (e is JsonException or NpyFormatException or IOException)
        {
            throw new LsvcrException($"{dir}: unreadable bundle file ({e.Message})", e);
        }
        try { model.WarmUp(options.MaxBatchSize); }
        catch (Exception e) { model.Dispose(); throw new LsvcrException($"{dir}: the encoders fail on a warm-up batch ({e.Message})", e); }
        model.LoadTime = sw.Elapsed;
        model.LoadedAt = DateTimeOffset.UtcNow;
        return model;
    }

    private void WarmUp(int maxBatch)
    {
        var some = Math.Min(VideoCount - 1, 3);
        var h = new UserHistory([.. Enumerable.Range(1, some)], [.. Enumerable.Range(1, some)], [.. Enumerable.Range(0, some).Select(_ => new[] { 1 })]);
        var empty = new UserHistory([], [], []);
        for (int i = 0; i < 3; i++)
        {
            EncodeRec([h, empty]).Dispose();
            EncodeCommRank([h, empty], [1, 1]);
        }
        // Also one full batch of full-window histories: ONNX Runtime grows its arena to the largest shapes here, on the
        // load thread, instead of in the first real batches after a swap.
        int window = Manifest.MaxHistory, n = Math.Min(VideoCount - 1, window);
        var full = new UserHistory([.. Enumerable.Range(0, window).Select(j => 1 + j % n)], [.. Enumerable.Range(0, window).Select(j => 1 + j % n)],
            [.. Enumerable.Range(0, window).Select(j => new[] { 1 + j % Math.Max(1, CommentCount - 1), 1 })]);
        var batch = Enumerable.Repeat(full, Math.Clamp(maxBatch, 1, 256)).ToArray();
        EncodeRec(batch).Dispose();
        EncodeCommRank(batch, [.. batch.Select(_ => 1)]);
    }

    /// <summary>A float32 [rows, cols] .npy file into a tensor in ONNX Runtime's native memory (the data follows the
    /// header, so it starts at file length − rows·cols·4).</summary>
    private static OrtValue ReadNative(string path, out int rows, out int cols)
    {
        (rows, cols) = Npy.ReadShape(path);
        long bytes = (long)rows * cols * sizeof(float);
        using var f = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
        long offset = f.Length - bytes;
        if (offset < 10 || offset > 1 << 20) throw new NpyFormatException(path, $"expected float32 data of shape ({rows}, {cols}) after the header ({f.Length} bytes)");
        var value = OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Float, [rows, cols]);
        try
        {
            f.Seek(offset, SeekOrigin.Begin);
            f.ReadExactly(System.Runtime.InteropServices.MemoryMarshal.AsBytes(value.GetTensorMutableDataAsSpan<float>()));
            return value;
        }
        catch
        {
            value.Dispose();
            throw;
        }
    }

    private void DisposeTables()
    {
        foreach (var v in new[] { _recCommentTable, _recCommentScale, _commentTable, _commentScale }) v?.Dispose();
    }

    private static T ReadJson<T>(string path)
    {
        using var f = File.OpenRead(path);
        return JsonSerializer.Deserialize<T>(f, JsonOptions) ?? throw new LsvcrException($"{path}: empty");
    }

    private static readonly JsonSerializerOptions JsonOptions = new() { PropertyNameCaseInsensitive = true };

    private static Dictionary<string, int> Index(string[] ids, string where)
    {
        var d = new Dictionary<string, int>(ids.Length, StringComparer.Ordinal);
        for (int i = 1; i < ids.Length; i++)
            if (!d.TryAdd(ids[i], i)) throw new LsvcrException($"{where}: duplicate id \"{ids[i]}\"");
        return d;
    }

    public ReadOnlySpan<int> CommentsOf(int video) => VideoComments.AsSpan(CommentOffsets[video], CommentOffsets[video + 1] - CommentOffsets[video]);

    public ReadOnlySpan<float> CommentVector(int comment) => _commentTable.GetTensorDataAsSpan<float>().Slice(comment * Hidden, Hidden);

    /// <summary>Rec: one ONNX call for the batch; the result holds the user vectors [B, d] and the scores [B, V].</summary>
    public RecOutput EncodeRec(IReadOnlyList<UserHistory> users)
    {
        using var inputs = new BatchInputs(users, Manifest.Rec.UsesCommentHistory);
        var names = new[] { "video_history", "entry_videos", "comment_ids", "comment_slots", "comment_table", "comment_scale" };
        var values = new[] { inputs.Videos, inputs.EntryVideos, inputs.CommentIds, inputs.CommentSlots, _recCommentTable, _recCommentScale };
        var outputs = _rec.Run(_runOptions, names, values, ["user", "scores"]);
        return new RecOutput(outputs, users.Count, Hidden, VideoCount);
    }

    /// <summary>CommRank user vectors [B·d] for the watched videos.</summary>
    public float[] EncodeCommRank(IReadOnlyList<UserHistory> users, IReadOnlyList<int> watched)
    {
        using var inputs = new BatchInputs(users, Manifest.CommRank.UsesCommentHistory);
        var video = watched.Select(v => (long)v).ToArray();
        using var videoValue = OrtValue.CreateTensorValueFromMemory(video, [video.Length]);
        var names = new[] { "video_history", "entry_videos", "comment_ids", "comment_slots", "comment_table", "comment_scale", "video" };
        var values = new[] { inputs.Videos, inputs.EntryVideos, inputs.CommentIds, inputs.CommentSlots, _commentTable, _commentScale, videoValue };
        using var outputs = _commRank.Run(_runOptions, names, values, ["user"]);
        return outputs[0].GetTensorDataAsSpan<float>().ToArray();
    }

    /// <summary>Takes a reference for a request; false once the model is being retired and has no users left.</summary>
    public bool TryAcquire()
    {
        while (true)
        {
            var n = Volatile.Read(ref _refs);
            if (n <= 0) return false;
            if (Interlocked.CompareExchange(ref _refs, n + 1, n) == n) return true;
        }
    }

    public void Release()
    {
        if (Interlocked.Decrement(ref _refs) == 0) Dispose();
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1) return;
        _rec.Dispose();
        _commRank.Dispose();
        _runOptions.Dispose();
        DisposeTables();
    }

    /// <summary>The id tensors of a batch: histories left-aligned and 0-padded, lengths ≥ 1 (an empty history is one
    /// pad position, as the model's own batching does); every entry's comments flat, each with its entry's slot
    /// (row · Lc + position), all of them (no cap: the model averages them all). A batch without comments feeds one pad
    /// id 0, which the graph excludes from every mean.</summary>
    private sealed class BatchInputs : IDisposable
    {
        public OrtValue Videos { get; }
        public OrtValue EntryVideos { get; }
        public OrtValue CommentIds { get; }
        public OrtValue CommentSlots { get; }

        public BatchInputs(IReadOnlyList<UserHistory> users, bool useComments)
        {
            int b = users.Count, lp = 1, lc = 1, n = 0;
            foreach (var u in users)
            {
                lp = Math.Max(lp, u.Videos.Length);
                if (!useComments) continue;
                lc = Math.Max(lc, u.EntryVideos.Length);
                foreach (var e in u.EntryComments) n += e.Length;
            }
            var videos = new long[b * lp];
            var entries = new long[b * lc];
            var ids = new long[Math.Max(n, 1)];
            var slots = new long[ids.Length];
            int at = 0;
            for (int row = 0; row < b; row++)
            {
                var u = users[row];
                for (int j = 0; j < u.Videos.Length; j++) videos[row * lp + j] = u.Videos[j];
                if (!useComments) continue;
                for (int j = 0; j < u.EntryVideos.Length; j++)
                {
                    entries[row * lc + j] = u.EntryVideos[j];
                    foreach (var c in u.EntryComments[j])
                    {
                        ids[at] = c;
                        slots[at++] = row * lc + j;
                    }
                }
            }
            Videos = OrtValue.CreateTensorValueFromMemory(videos, [b, lp]);
            EntryVideos = OrtValue.CreateTensorValueFromMemory(entries, [b, lc]);
            CommentIds = OrtValue.CreateTensorValueFromMemory(ids, [ids.Length]);
            CommentSlots = OrtValue.CreateTensorValueFromMemory(slots, [slots.Length]);
        }

        public void Dispose()
        {
            Videos.Dispose();
            EntryVideos.Dispose();
            CommentIds.Dispose();
            CommentSlots.Dispose();
        }
    }
}

/// <summary>The Rec graph's outputs for one batch (disposing returns ONNX Runtime's buffers).</summary>
public sealed class RecOutput(IDisposableReadOnlyCollection<OrtValue> outputs, int batch, int hidden, int videos) : IDisposable
{
    public int Batch => batch;
    public int Videos => videos;
    public ReadOnlySpan<float> User(int row) => outputs[0].GetTensorDataAsSpan<float>().Slice(row * hidden, hidden);
    /// <summary>Writable: the scorer masks exclusions in place.</summary>
    public Span<float> Scores(int row) => outputs[1].GetTensorMutableDataAsSpan<float>().Slice(row * videos, videos);
    public void Dispose() => outputs.Dispose();
}

/// <summary>A history entry in external ids, as a request carries it.</summary>
public sealed record CommentEntry(string Video, IReadOnlyList<string> Comments);

/// <summary>A resolved history and the ids it dropped because the bundle's catalogue does not know them.</summary>
public sealed record ResolvedHistory(UserHistory History, IReadOnlyList<string> UnknownVideos, IReadOnlyList<string> UnknownComments);

public static class HistoryResolver
{
    /// <summary>
    /// Maps external ids to the model's internal ids. Unknown ids are dropped and listed (an entry whose video is
    /// unknown is dropped whole); then the most recent <see cref="BundleManifest.MaxHistory"/> videos and entries are
    /// kept — the window the model was trained with — each entry with all its known comments (the model averages
    /// them all; the request's id limit bounds their number).
    /// </summary>
    public static ResolvedHistory Resolve(ServingModel model, IReadOnlyList<string> videos, IReadOnlyList<CommentEntry> entries)
    {
        var unknownVideos = new List<string>();
        var unknownComments = new List<string>();
        var known = new List<int>(videos.Count);
        foreach (var v in videos)
            if (model.VideoIndex.TryGetValue(v, out var id)) known.Add(id); else unknownVideos.Add(v);
        var entryVideos = new List<int>(entries.Count);
        var entryComments = new List<int[]>(entries.Count);
        foreach (var e in entries)
        {
            if (!model.VideoIndex.TryGetValue(e.Video, out var v))
            {
                unknownVideos.Add(e.Video);
                continue;
            }
            var cs = new List<int>(e.Comments.Count);
            foreach (var c in e.Comments)
                if (model.CommentIndex.TryGetValue(c, out var id)) cs.Add(id); else unknownComments.Add(c);
            entryVideos.Add(v);
            entryComments.Add([.. cs]);
        }
        var max = model.Manifest.MaxHistory;
        int skipV = Math.Max(0, known.Count - max), skipE = Math.Max(0, entryVideos.Count - max);
        var history = new UserHistory([.. known.Skip(skipV)], [.. entryVideos.Skip(skipE)], [.. entryComments.Skip(skipE)]);
        return new ResolvedHistory(history, unknownVideos, unknownComments);
    }
}
