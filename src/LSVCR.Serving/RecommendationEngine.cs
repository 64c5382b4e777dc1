using System.Diagnostics.Metrics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace LSVCR.Serving;

/// <summary>What <c>GET /v1/model</c> shows.</summary>
public sealed record ModelStatus(string Version, DateTimeOffset LoadedAt, double LoadSeconds, int Videos, int Comments,
    string TrainingRun, string? Pinned, IReadOnlyList<string> History, string? LastError);

/// <summary>
/// The serving engine: the current model (swapped atomically; each request holds a reference to the model it started
/// on until it is answered), the two micro-batchers, and the pin / rollback / load operations the watcher and the
/// admin endpoints use.
/// </summary>
public sealed class RecommendationEngine : IAsyncDisposable
{
    public const string VideosEndpoint = "videos", CommentsEndpoint = "comments";

    private readonly ServingOptions _options;
    private readonly ServingMetrics _metrics;
    private readonly ILogger<RecommendationEngine> _log;
    private readonly MicroBatcher<VideoItem, Recommendation> _videos;
    private readonly MicroBatcher<CommentItem, Recommendation> _comments;
    private readonly SemaphoreSlim _loading = new(1, 1);
    private readonly List<string> _history = [];
    private ServingModel? _current;
    private string? _pinned;
    private string? _lastError;
    private string? _failedDir;

    public RecommendationEngine(IOptions<ServingOptions> options, ServingMetrics metrics, ILogger<RecommendationEngine> log)
    {
        _options = options.Value;
        _metrics = metrics;
        _log = log;
        _videos = new(VideosEndpoint, RunVideos, _options, metrics, log);
        _comments = new(CommentsEndpoint, RunComments, _options, metrics, log);
        metrics.Observe(
            () => [new(_videos.Depth, new KeyValuePair<string, object?>("endpoint", VideosEndpoint)), new(_comments.Depth, new KeyValuePair<string, object?>("endpoint", CommentsEndpoint))],
            () => Volatile.Read(ref _current) is { } m ? [new Measurement<int>(1, new KeyValuePair<string, object?>("model_version", m.Version))] : []);
    }

    public ServingOptions Options => _options;

    /// <summary>True once a model is loaded and warmed up (the readiness probe).</summary>
    public bool IsReady => Volatile.Read(ref _current) is not null;

    public string? Pinned => _pinned;

    public ModelStatus? Status()
    {
        var m = Volatile.Read(ref _current);
        lock (_history)
            return m is null ? null : new ModelStatus(m.Version, m.LoadedAt, m.LoadTime.TotalSeconds, m.VideoCount - 1, m.CommentCount - 1,
                m.Manifest.TrainingRun, _pinned, [.. _history], _lastError);
    }

    // ---- model lifecycle ------------------------------------------------------------------------------------------

    /// <summary>Loads, verifies and warms the bundle in <paramref name="dir"/> on a background thread, then swaps it in.
    /// A bundle that fails keeps the old model and is reported (returned and logged); it is not retried until its folder changes.</summary>
    public async Task<(bool Swapped, string? Error)> LoadAsync(string dir, CancellationToken ct = default)
    {
        await _loading.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            // The watcher and the ModelPublished consumer may both ask for the same new bundle: load it once.
            try { if (BundleManifest.Read(dir).ModelVersion == Volatile.Read(ref _current)?.Version) return (true, null); }
            catch (LsvcrException) { } // ServingModel.Load reports it below
            ServingModel next;
            try
            {
                var current = Volatile.Read(ref _current); // loads are serialised: it stays current until this one swaps
                var loading = BackgroundLoad.Run(() => ServingModel.Load(dir, _options, current), "lsvcr bundle load");
                try { next = await loading.WaitAsync(ct).ConfigureAwait(false); }
                catch (OperationCanceledException)
                {
                    // Shutting down: the load finishes on its own thread; its model is not used.
                    _ = loading.ContinueWith(t => { if (t.IsCompletedSuccessfully) t.Result.Dispose(); }, TaskScheduler.Default);
                    throw;
                }
            }
            catch (Exception e) when (e is LsvcrException or IOException or UnauthorizedAccessException)
            {
                _lastError = e.Message;
                _failedDir = dir;
                _log.LogError("Bundle {Dir} was not loaded, keeping {Version}: {Error}", dir, Volatile.Read(ref _current)?.Version ?? "(none)", e.Message);
                return (false, e.Message);
            }
            _metrics.ModelLoadDuration.Record(next.LoadTime.TotalSeconds);
            var old = Interlocked.Exchange(ref _current, next);
            lock (_history)
            {
                _history.Remove(next.Version);
                _history.Add(next.Version);
            }
            _lastError = null;
            _failedDir = null;
            _log.LogInformation("Model {Version} from {Dir} is live (load + warm-up {Seconds:F2} s); was {Old}", next.Version, dir, next.LoadTime.TotalSeconds, old?.Version ?? "(none)");
            old?.Release(); // disposed once its in-flight requests are done
            return (true, null);
        }
        finally
        {
            _loading.Release();
        }
    }

    /// <summary>The bundles under <see cref="ServingOptions.BundleRoot"/> with a readable manifest, newest first.</summary>
    public IReadOnlyList<(string Dir, BundleManifest Manifest)> Bundles()
    {
        if (!Directory.Exists(_options.BundleRoot)) return [];
        var found = new List<(string, BundleManifest)>();
        foreach (var dir in Directory.GetDirectories(_options.BundleRoot))
        {
            if (Path.GetFileName(dir).StartsWith('.') || !File.Exists(Path.Combine(dir, BundleManifest.FileName))) continue;
            try { found.Add((dir, BundleManifest.Read(dir))); }
            catch (LsvcrException e) { _log.LogWarning("Skipping {Dir}: {Error}", dir, e.Message); }
        }
        return [.. found.OrderByDescending(b => b.Item2.CreatedAt).ThenBy(b => b.Item2.ModelVersion, StringComparer.Ordinal)];
    }

    /// <summary>One poll: load the pinned version, else the newest bundle, when it is not the current one.</summary>
    public async Task PollAsync(CancellationToken ct)
    {
        var bundles = Bundles();
        var target = _pinned is { } pin ? bundles.FirstOrDefault(b => b.Manifest.ModelVersion == pin) : bundles.FirstOrDefault();
        if (target.Dir is null || target.Manifest.ModelVersion == Volatile.Read(ref _current)?.Version) return;
        if (target.Dir == _failedDir) return;
        await LoadAsync(target.Dir, ct).ConfigureAwait(false);
    }

    /// <summary>Pins a version (found under the bundle root) and loads it; null when no bundle has that version.</summary>
    public async Task<(bool Found, bool Swapped, string? Error)> PinAsync(string version, CancellationToken ct)
    {
        var bundle = Bundles().FirstOrDefault(b => b.Manifest.ModelVersion == version);
        if (bundle.Dir is null) return (false, false, null);
        if (bundle.Manifest.ModelVersion == Volatile.Read(ref _current)?.Version)
        {
            _pinned = version;
            return (true, true, null);
        }
        var (swapped, error) = await LoadAsync(bundle.Dir, ct).ConfigureAwait(false);
        if (swapped) _pinned = version;
        return (true, swapped, error);
    }

    /// <summary>Pins the version that was live before the current one.</summary>
    public async Task<(bool Found, bool Swapped, string? Version, string? Error)> RollbackAsync(CancellationToken ct)
    {
        string? previous;
        lock (_history) previous = _history.Count >= 2 ? _history[^2] : null;
        if (previous is null) return (false, false, null, null);
        var (found, swapped, error) = await PinAsync(previous, ct).ConfigureAwait(false);
        return (found, swapped, previous, error);
    }

    public void Unpin() => _pinned = null;

    private ServingModel Acquire()
    {
        while (true)
        {
            var m = Volatile.Read(ref _current) ?? throw new NoModelException();
            if (m.TryAcquire()) return m;
        }
    }

    // ---- requests --------------------------------------------------------------------------------------------------

    private sealed class VideoItem(ServingModel model, UserHistory history, int k, HashSet<int> excluded) : WorkItem<Recommendation>(model)
    {
        public UserHistory History { get; } = history;
        public int K { get; } = k;
        public HashSet<int> Excluded { get; } = excluded;
        public ResolvedHistory? Resolved { get; init; }
    }

    private sealed class CommentItem(ServingModel model, UserHistory history, int video, int[] candidates, int k) : WorkItem<Recommendation>(model)
    {
        public UserHistory History { get; } = history;
        public int Video { get; } = video;
        public int[] Candidates { get; } = candidates;
        public int K { get; } = k;
        public ResolvedHistory? Resolved { get; init; }
    }

    public async Task<Recommendation> RecommendVideosAsync(VideoQuery q)
    {
        var model = Acquire();
        try
        {
            var resolved = HistoryResolver.Resolve(model, q.Videos, q.Entries);
            var excluded = new HashSet<int>();
            foreach (var id in q.Exclude) if (model.VideoIndex.TryGetValue(id, out var v)) excluded.Add(v);
            if (q.ExcludeSeen)
            {
                excluded.UnionWith(resolved.History.Videos);
                // Every known video of the request's history counts as seen, also beyond the model's window.
                foreach (var v in q.Videos) if (model.VideoIndex.TryGetValue(v, out var id)) excluded.Add(id);
            }
            if (resolved.History.IsEmpty)
            {
                var items = new List<ScoredItem>(q.K);
                for (int i = 0; i < model.Popular.Length && items.Count < q.K; i++)
                    if (!excluded.Contains(model.Popular[i])) items.Add(new(model.VideoIds[model.Popular[i]], model.PopularityScore[i]));
                return new Recommendation(model.Version, items, "popularity", resolved.UnknownVideos, resolved.UnknownComments);
            }
            if (!_videos.TryAdmit()) throw new OverloadedException(VideosEndpoint);
            return await _videos.RunAsync(new VideoItem(model, resolved.History, q.K, excluded) { Resolved = resolved }).ConfigureAwait(false);
        }
        finally
        {
            model.Release();
        }
    }

    public async Task<Recommendation> RankCommentsAsync(CommentQuery q)
    {
        var model = Acquire();
        try
        {
            if (!model.VideoIndex.TryGetValue(q.Video, out var video))
                throw new InvalidQueryException("video", $"video \"{q.Video}\" is not in the catalogue of model {model.Version}");
            int[] candidates;
            if (q.Candidates is null) candidates = model.CommentsOf(video).ToArray();
            else
            {
                candidates = new int[q.Candidates.Count];
                for (int i = 0; i < candidates.Length; i++)
                    if (!model.CommentIndex.TryGetValue(q.Candidates[i], out candidates[i]))
                        throw new InvalidQueryException($"candidates[{i}]", $"comment \"{q.Candidates[i]}\" is not in the catalogue of model {model.Version}");
                candidates = [.. candidates.Distinct()];
            }
            var resolved = HistoryResolver.Resolve(model, q.Videos, q.Entries);
            if (resolved.History.IsEmpty || candidates.Length == 0)
            {
                // Popularity: the video's comment-list order (most popular first); candidates not in it follow in request order.
                var list = model.CommentsOf(video).ToArray();
                var rank = new Dictionary<int, int>(list.Length);
                for (int i = 0; i < list.Length; i++) rank.TryAdd(list[i], i);
                var ordered = candidates.Select((c, i) => (c, r: rank.TryGetValue(c, out var r) ? r : list.Length + i)).OrderBy(x => x.r).Take(q.K);
                var items = ordered.Select(x => new ScoredItem(model.CommentIds[x.c], 1f / (1 + x.r))).ToList();
                return new Recommendation(model.Version, items, "popularity", resolved.UnknownVideos, resolved.UnknownComments);
            }
            if (!_comments.TryAdmit()) throw new OverloadedException(CommentsEndpoint);
            return await _comments.RunAsync(new CommentItem(model, resolved.History, video, candidates, q.K) { Resolved = resolved }).ConfigureAwait(false);
        }
        finally
        {
            model.Release();
        }
    }

    private static void RunVideos(IReadOnlyList<VideoItem> batch)
    {
        var model = batch[0].Model;
        using var output = model.EncodeRec([.. batch.Select(b => b.History)]);
        for (int row = 0; row < batch.Count; row++)
        {
            var item = batch[row];
            var scores = output.Scores(row);
            scores[0] = float.NegativeInfinity; // pad
            foreach (var v in item.Excluded) scores[v] = float.NegativeInfinity;
            var top = TopK.Select(scores, item.K);
            var items = top.Select(t => new ScoredItem(model.VideoIds[t.Id], t.Score)).ToList();
            item.Result.TrySetResult(new Recommendation(model.Version, items, null, item.Resolved!.UnknownVideos, item.Resolved.UnknownComments));
        }
    }

    private static void RunComments(IReadOnlyList<CommentItem> batch)
    {
        var model = batch[0].Model;
        var users = model.EncodeCommRank([.. batch.Select(b => b.History)], [.. batch.Select(b => b.Video)]);
        var d = model.Hidden;
        for (int row = 0; row < batch.Count; row++)
        {
            var item = batch[row];
            var user = users.AsSpan(row * d, d);
            var scored = new (int Id, float Score)[item.Candidates.Length];
            for (int i = 0; i < scored.Length; i++)
                scored[i] = (item.Candidates[i], TopK.Dot(user, model.CommentVector(item.Candidates[i]), model.InverseTemperature));
            var items = scored.OrderByDescending(s => s.Score).ThenBy(s => s.Id).Take(item.K)
                .Select(s => new ScoredItem(model.CommentIds[s.Id], s.Score)).ToList();
            item.Result.TrySetResult(new Recommendation(model.Version, items, null, item.Resolved!.UnknownVideos, item.Resolved.UnknownComments));
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _videos.DisposeAsync().ConfigureAwait(false);
        await _comments.DisposeAsync().ConfigureAwait(false);
        Interlocked.Exchange(ref _current, null)?.Release();
    }
}
