using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using LSVCR.Data;

namespace LSVCR.Training;

/// <summary>Test metrics of one variant on one task and protocol.</summary>
public sealed record ExperimentRow
{
    [JsonPropertyName("task")] public required string Task { get; init; }
    [JsonPropertyName("variant")] public required string Variant { get; init; }
    [JsonPropertyName("protocol")] public required string Protocol { get; init; }
    [JsonPropertyName("result")] public required EvalResult Result { get; init; }
    /// <summary>Trained variants: the epoch of the checkpoint evaluated (best validation ndcg@5) and the epochs run.</summary>
    [JsonPropertyName("best_epoch")] public int? BestEpoch { get; init; }
    [JsonPropertyName("epochs_run")] public int? EpochsRun { get; init; }
}

/// <summary>The outcome of <see cref="ExperimentRunner.RunAsync"/>: <c>report.json</c> and, via <see cref="ToMarkdown"/>, <c>report.md</c>.</summary>
public sealed record ExperimentReport
{
    [JsonPropertyName("rows")] public required IReadOnlyList<ExperimentRow> Rows { get; init; }
    [JsonPropertyName("training")] public required TrainOptions Training { get; init; }
    [JsonPropertyName("evaluation")] public required EvalOptions Evaluation { get; init; }
    [JsonPropertyName("dataset")] public required IReadOnlyDictionary<string, int> Dataset { get; init; }

    public static readonly string[] Columns = ["recall@1", "recall@5", "recall@10", "ndcg@5", "ndcg@10", "mrr@5", "mrr@10", "hit@10"];

    /// <summary>The test result of a variant; throws when the experiment did not run it.</summary>
    public EvalResult Get(TaskKind task, string variant, string protocol) =>
        Rows.FirstOrDefault(r => r.Task == Protocols.TaskName(task) && r.Variant == variant && r.Protocol == protocol)?.Result
        ?? throw new KeyNotFoundException($"no result for {Protocols.TaskName(task)} / {variant} / {protocol}");

    public string ToJson() => JsonSerializer.Serialize(this, Json.Indented);

    public string ToMarkdown()
    {
        var inv = CultureInfo.InvariantCulture;
        var md = new StringBuilder();
        md.AppendLine("# LSVCR experiment report").AppendLine();
        md.AppendLine("Test split, metrics averaged over examples (MODEL.md §5); trained variants are evaluated at their best " +
                      "validation-ndcg@5 epoch. Ties are ranked pessimistically (a negative scoring the same as a positive ranks before it).").AppendLine();
        md.AppendLine("Dataset: " + string.Join(", ", Dataset.Select(kv => $"{kv.Key} {kv.Value.ToString("N0", inv)}")) + ".").AppendLine();
        var t = Training;
        md.AppendLine(inv, $"Training: up to {t.Epochs} epochs, batch {t.BatchSize}, AdamW lr {t.Lr} wd {t.WeightDecay}, {t.Schedule} schedule, " +
                           $"warmup {t.Warmup}, patience {t.Patience}, id–text weight {t.IdTextWeight}, " +
                           $"negatives {(t.Negatives?.ToString(inv) ?? "default (Rec full softmax, CommRank 19)")}, seed {t.Seed}, " +
                           $"{t.Shards} data-parallel shard{(t.Shards == 1 ? "" : "s")} per batch. " +
                           $"Evaluation seed {Evaluation.Seed}.").AppendLine();
        md.AppendLine(inv, $"Model: hidden {t.Hidden}, heads {t.Heads}, layers {t.Layers}, mix layers {t.MixLayers}, inner {t.Inner}, " +
                           $"dropout {t.Dropout} (attention {t.EffectiveAttentionDropout}), max position {t.MaxPosition}, temperature {t.Temperature}; " +
                           $"AdamW betas ({t.AdamBeta1}, {t.AdamBeta2}), eps {t.AdamEps}. " +
                           $"All settings: `training` in report.json.").AppendLine();
        foreach (var group in Rows.GroupBy(r => (r.Task, r.Protocol)))
        {
            var first = group.First().Result;
            md.AppendLine(inv, $"## {group.Key.Task} — {group.Key.Protocol} ({first.Examples} test examples)").AppendLine();
            var extra = first.Metrics.Keys.Where(k => !Columns.Contains(k) && (k.StartsWith("recall@", StringComparison.Ordinal) || k.StartsWith("ndcg@", StringComparison.Ordinal)))
                .Where(k => !k.EndsWith("@1", StringComparison.Ordinal) || k.StartsWith("recall", StringComparison.Ordinal)).ToArray();
            var cols = Columns.Concat(extra).ToArray();
            md.AppendLine("| variant | " + string.Join(" | ", cols) + " | best epoch |");
            md.AppendLine("|---|" + string.Concat(cols.Select(_ => "---:|")) + "---:|");
            foreach (var row in group)
                md.AppendLine($"| {row.Variant} | " + string.Join(" | ", cols.Select(c => row.Result.Metrics.TryGetValue(c, out var v) ? v.ToString("F4", inv) : "–"))
                              + $" | {(row.BestEpoch is int b ? $"{b}/{row.EpochsRun}" : "–")} |");
            md.AppendLine();
        }
        md.AppendLine("## Variants").AppendLine();
        foreach (var task in Rows.Select(r => r.Task).Distinct())
        {
            md.AppendLine(inv, $"### {task}").AppendLine();
            foreach (var variant in Rows.Where(r => r.Task == task).Select(r => r.Variant).Distinct())
                md.AppendLine(inv, $"- **{variant}**: {Variants.Describe(variant, Protocols.ParseTask(task))}");
            md.AppendLine();
        }
        return md.ToString();
    }
}

/// <summary>
/// Trains and evaluates every requested variant on every requested task, then writes <c>report.md</c> and
/// <c>report.json</c>. Each trained variant lives in <c>out/&lt;task&gt;/&lt;variant&gt;</c> with its own resume state
/// and its test metrics (<c>test-metrics.json</c>), so rerunning into the same folder skips finished runs and resumes
/// interrupted ones.
/// </summary>
public static class ExperimentRunner
{
    public const string ReportMarkdown = "report.md", ReportJson = "report.json", TestMetricsFile = "test-metrics.json";

    public static async Task<ExperimentReport> RunAsync(LsvcrDataset data, FloatMatrix photoEmbs, FloatMatrix commentEmbs,
        ExperimentOptions options, IProgress<JobProgress>? progress = null, CancellationToken ct = default)
    {
        foreach (var v in options.Variants) Variants.Check(v);
        // Every variant trains with the same effective settings, and the report records them.
        options = options with { Training = TrainSettings.Resolve(options.Training) };
        options.Evaluation.Check();
        TextEmbeddings.Check(photoEmbs, commentEmbs, data.Catalog);
        Directory.CreateDirectory(options.OutDir);
        var rows = new List<ExperimentRow>();
        var popularity = new PopularityScorer(data);
        foreach (var task in options.Tasks)
            foreach (var variant in options.Variants)
            {
                ct.ThrowIfCancellationRequested();
                if (!Variants.IsTrained(variant))
                {
                    foreach (var protocol in Protocols.For(task))
                        rows.Add(new ExperimentRow
                        {
                            Task = Protocols.TaskName(task), Variant = variant, Protocol = protocol,
                            Result = Evaluator.Evaluate(popularity, data, task, Split.Test, protocol, options.Evaluation, progress: progress, ct: ct),
                        });
                    continue;
                }
                var runDir = Path.Combine(options.OutDir, Protocols.TaskName(task), variant);
                var trained = await FineTuner.RunAsync(data, photoEmbs, commentEmbs, task, variant, runDir, options.Training,
                    options.Evaluation, progress, ct);
                var results = await Task.Factory.StartNew(() => TestMetrics(data, photoEmbs, commentEmbs, task, variant, runDir, trained, options.Evaluation, progress, ct),
                    ct, TaskCreationOptions.LongRunning, TaskScheduler.Default);
                rows.AddRange(results.Select(r => new ExperimentRow
                {
                    Task = r.Task, Variant = variant, Protocol = r.Protocol, Result = r, BestEpoch = trained.BestEpoch, EpochsRun = trained.EpochsRun,
                }));
            }
        rows.AddRange(options.AdditionalRows);
        var report = new ExperimentReport
        {
            Rows = rows, Training = options.Training, Evaluation = options.Evaluation,
            Dataset = new Dictionary<string, int>
            {
                ["videos"] = data.Catalog.PhotoCount - 1, ["comments"] = data.Catalog.CommentCount - 1,
                ["rec train"] = data[TaskKind.Rec, Split.Train].Count, ["rec test"] = data[TaskKind.Rec, Split.Test].Count,
                ["commrank train"] = data[TaskKind.CommRank, Split.Train].Count, ["commrank test"] = data[TaskKind.CommRank, Split.Test].Count,
            },
        };
        WriteAtomically(Path.Combine(options.OutDir, ReportJson), report.ToJson());
        // The pictures go first, so report.md never links to a file that is not there yet.
        var charts = ReportCharts.ForExperiment(report, (task, variant) => ReportCharts.ReadHistory(Path.Combine(options.OutDir, task, variant, FineTuner.HistoryFile)));
        var markdown = report.ToMarkdown() + ReportCharts.Markdown(charts);
        ReportCharts.WriteFiles(options.OutDir, charts, ReportCharts.Html("LSVCR experiment report", markdown));
        WriteAtomically(Path.Combine(options.OutDir, ReportMarkdown), markdown);
        return report;
    }

    /// <param name="Key">SHA-256 over what the evaluation reads: the best checkpoint's files, the dataset, both embedding
    /// tables, and the evaluation settings.</param>
    private sealed record StoredMetrics(int BestEpoch, int EpochsRun, string Key, List<EvalResult> Results);

    /// <summary>Test metrics of the best checkpoint, reused when they were computed from the same contents (checkpoint,
    /// dataset, embeddings) and settings.</summary>
    private static List<EvalResult> TestMetrics(LsvcrDataset data, FloatMatrix photoEmbs, FloatMatrix commentEmbs, TaskKind task, string variant,
        string runDir, TrainResult trained, EvalOptions evaluation, IProgress<JobProgress>? progress, CancellationToken ct)
    {
        var path = Path.Combine(runDir, TestMetricsFile);
        string fingerprint = ContentHash.Of(ContentHash.OfPath(ModelStore.Locate(trained.BestDir)), data.ContentHash(),
            photoEmbs.ContentHash(), commentEmbs.ContentHash(), JsonSerializer.Serialize(evaluation), Protocols.TaskName(task), variant);
        if (File.Exists(path))
        {
            try
            {
                var stored = JsonSerializer.Deserialize<StoredMetrics>(File.ReadAllText(path));
                if (stored is not null && stored.Key == fingerprint)
                    return stored.Results;
            }
            catch (JsonException) { }  // unreadable: recompute and overwrite
        }
        var (model, info) = ModelStore.Load(trained.BestDir, photoEmbs, commentEmbs, evaluation.CpuKernels);
        using (model)
        {
            var scorer = new ModelScorer(model);
            var results = Protocols.For(task)
                .Select(p => Evaluator.Evaluate(scorer, data, task, Split.Test, p, evaluation, Variants.DropsComments(variant), info.Config.MaxPosition, progress, ct))
                .ToList();
            WriteAtomically(path, JsonSerializer.Serialize(new StoredMetrics(trained.BestEpoch, trained.EpochsRun, fingerprint, results), Json.Indented));
            return results;
        }
    }

    /// <summary>Replaces the file whole; a file that already holds <paramref name="text"/> is left alone, so a rerun
    /// that recomputes nothing also rewrites nothing (its write times show it).</summary>
    internal static void WriteAtomically(string path, string text)
    {
        if (File.Exists(path) && File.ReadAllText(path) == text) return;
        var tmp = path + ".tmp";
        File.WriteAllText(tmp, text);
        File.Move(tmp, path, overwrite: true);
    }
}
