using System.Text.Json;
using System.Text.Json.Serialization;
using LSVCR.Data;
using LSVCR.Modeling;
using static TorchSharp.torch;

namespace LSVCR.Training;

/// <summary>Evaluation protocols of MODEL.md §5.</summary>
public static class Protocols
{
    /// <summary>Rec: target + 99 uniform negatives.</summary>
    public const string Sampled = "sampled";
    /// <summary>Rec: all videos.</summary>
    public const string Full = "full";
    /// <summary>CommRank: the watched video's comments (≤ 100, positives always included).</summary>
    public const string VideoComments = "video-comments";

    /// <summary>The protocols reported for a task, the validation one first.</summary>
    public static IReadOnlyList<string> For(TaskKind task) => task == TaskKind.Rec ? [Sampled, Full] : [VideoComments];

    /// <summary>Resolves a user's --protocol (null = the task's default) and rejects ones the task does not have.</summary>
    public static string Resolve(TaskKind task, string? protocol)
    {
        if (protocol is null) return For(task)[0];
        if (task == TaskKind.CommRank && protocol is Sampled) return VideoComments;
        if (!For(task).Contains(protocol))
            throw new LsvcrException($"protocol '{protocol}' does not apply to {TaskName(task)} (use {string.Join(" or ", For(task))})");
        return protocol;
    }

    public static string TaskName(TaskKind task) => task == TaskKind.Rec ? "rec" : "commrank";

    public static TaskKind ParseTask(string name) => name.ToLowerInvariant() switch
    {
        "rec" => TaskKind.Rec,
        "commrank" or "comm_rank" or "comm-rank" => TaskKind.CommRank,
        _ => throw new LsvcrException($"unknown task '{name}' (expected rec or commrank)"),
    };
}

/// <summary>Metrics of one model (or baseline) on one task, split and protocol: the <c>evaluate --json</c> document.</summary>
public sealed record EvalResult
{
    [JsonPropertyName("task")] public required string Task { get; init; }
    [JsonPropertyName("split")] public required string Split { get; init; }
    [JsonPropertyName("protocol")] public required string Protocol { get; init; }
    [JsonPropertyName("examples")] public required int Examples { get; init; }
    [JsonPropertyName("metrics")] public required IReadOnlyDictionary<string, double> Metrics { get; init; }

    public double this[string metric] => Metrics.TryGetValue(metric, out var v) ? v
        : throw new KeyNotFoundException($"metric '{metric}' was not computed (have {string.Join(", ", Metrics.Keys)})");

    public string ToJson() => JsonSerializer.Serialize(this, Json.Indented);
}

/// <summary>Scores the candidates of a batch: [B·C] for candidate lists, [B·PhotoCount] for full ranking.</summary>
public interface IBatchScorer
{
    float[] Score(HostBatch batch, TaskKind task);
}

/// <summary>Scores with a RecCom in eval mode, without gradients.</summary>
public sealed class ModelScorer(RecCom model) : IBatchScorer
{
    public float[] Score(HostBatch batch, TaskKind task)
    {
        // Grad mode and dispose scopes are per thread: both live inside this synchronous call.
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        model.eval();
        using var sr = batch.ToSrBatch();
        var (user, _) = model.Encode(sr, task);
        var candidates = batch.CandidateTensor();
        var scores = candidates is null ? model.ScoreAllVideos(user) : model.ScoreCandidates(user, candidates, task);
        return scores.to_type(ScalarType.Float32).contiguous().data<float>().ToArray();
    }
}

/// <summary>
/// The popularity baseline. Rec: a video's score is how often it is the target of a Rec training example.
/// CommRank: a comment's score is minus its position in its video's comment_list (popularity order), so the most
/// popular comment ranks first; comments outside the list rank last.
/// </summary>
public sealed class PopularityScorer : IBatchScorer
{
    private readonly float[] _videoScore;
    private readonly float[] _commentScore;

    public PopularityScorer(LsvcrDataset data)
    {
        var catalog = data.Catalog;
        _videoScore = new float[catalog.PhotoCount];
        foreach (int t in data[TaskKind.Rec, Split.Train].TargetPhoto) if (t > 0 && t < _videoScore.Length) _videoScore[t]++;
        _commentScore = new float[catalog.CommentCount];
        Array.Fill(_commentScore, -1e9f);
        for (int p = 1; p < catalog.PhotoCount; p++)
        {
            var list = catalog.CommentsOf(p);
            for (int i = 0; i < list.Length; i++)
                if (_commentScore[list[i]] == -1e9f) _commentScore[list[i]] = -i;
        }
    }

    /// <summary>Rec training-target count of a video.</summary>
    public float VideoScore(int video) => _videoScore[video];

    public float[] Score(HostBatch batch, TaskKind task)
    {
        if (batch.Candidates is null)
        {
            var all = new float[batch.Size * _videoScore.Length];
            for (int row = 0; row < batch.Size; row++) _videoScore.CopyTo(all, row * _videoScore.Length);
            return all;
        }
        var table = task == TaskKind.Rec ? _videoScore : _commentScore;
        var scores = new float[batch.Candidates.Length];
        for (int i = 0; i < scores.Length; i++) scores[i] = table[batch.Candidates[i]];
        return scores;
    }
}

/// <summary>Runs an evaluation protocol over a split and averages the metrics (MODEL.md §5).</summary>
public static class Evaluator
{
    /// <summary>Full ranking materialises [B, PhotoCount] scores; the batch shrinks to keep that near this many floats.</summary>
    private const long FullRankingFloats = 4_000_000;

    public static EvalResult Evaluate(IBatchScorer scorer, LsvcrDataset data, TaskKind task, Split split, string? protocol,
        EvalOptions options, bool dropComments = false, int maxPosition = 50, IProgress<JobProgress>? progress = null,
        CancellationToken ct = default)
    {
        options.Check();
        protocol = Protocols.Resolve(task, protocol);
        var set = data[task, split];
        var catalog = data.Catalog;
        var source = new BatchSource(catalog, set, training: false, maxPosition, dropComments);
        bool full = protocol == Protocols.Full;
        int batchSize = full ? (int)Math.Clamp(FullRankingFloats / catalog.PhotoCount, 1, options.BatchSize) : options.BatchSize;
        var ks = options.AllKs;
        var acc = new MetricAccumulator(ks);
        string stage = $"evaluate {Protocols.TaskName(task)} {split.FileName()} ({protocol})";

        IEnumerable<HostBatch> Produce()
        {
            var rng = new Random(options.Seed);
            var dummy = new Random(0);
            for (int start = 0; start < set.Count; start += batchSize)
            {
                int n = Math.Min(batchSize, set.Count - start);
                var batch = source.Assemble(Enumerable.Range(start, n).ToArray(), dummy);
                if (!full) AddCandidates(batch, rng);
                yield return batch;
            }
        }

        void AddCandidates(HostBatch batch, Random rng)
        {
            var lists = new (int[] C, bool[] P)[batch.Size];
            for (int row = 0; row < batch.Size; row++)
            {
                int i = batch.Examples[row], target = set.TargetPhoto[i];
                if (task == TaskKind.Rec)
                {
                    var c = Sampling.RecCandidates(rng, catalog.PhotoCount, target, options.SampledNegatives);
                    lists[row] = (c, c.Select(v => v == target).ToArray());
                }
                else lists[row] = Sampling.CommRankCandidates(rng, catalog, target, set.PositivesOf(i), options.MaxCommentCandidates);
            }
            int width = Math.Max(1, lists.Max(l => l.C.Length));
            batch.CandidateCount = width;
            batch.Candidates = new long[batch.Size * width];
            batch.Positive = new bool[batch.Size * width];
            for (int row = 0; row < batch.Size; row++)
                for (int j = 0; j < lists[row].C.Length; j++)
                {
                    batch.Candidates[row * width + j] = lists[row].C[j];
                    batch.Positive[row * width + j] = lists[row].P[j];
                }
        }

        int done = 0;
        foreach (var batch in Prefetch.Run(Produce(), 2, ct))
        {
            ct.ThrowIfCancellationRequested();
            var scores = scorer.Score(batch, task);
            if (full)
            {
                int n = catalog.PhotoCount;
                for (int row = 0; row < batch.Size; row++)
                    acc.Add([Metrics.RankOfSingle(scores.AsSpan(row * n, n), (int)batch.Target[row], skip: 0)]);
            }
            else
            {
                int c = batch.CandidateCount;
                var valid = new bool[c];
                for (int row = 0; row < batch.Size; row++)
                {
                    for (int j = 0; j < c; j++) valid[j] = batch.Candidates![row * c + j] != 0;
                    acc.Add(Metrics.RanksOfPositives(scores.AsSpan(row * c, c), batch.Positive.AsSpan(row * c, c), valid));
                }
            }
            done += batch.Size;
            progress?.Report(new(stage, done, set.Count));
        }
        return new EvalResult
        {
            Task = Protocols.TaskName(task), Split = split.FileName(), Protocol = protocol, Examples = acc.Examples, Metrics = acc.Result(),
        };
    }
}

internal static class Json
{
    public static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };
}
