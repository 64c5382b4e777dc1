using System.Globalization;
using System.Text;
using System.Text.Json;
using LSVCR.Artifacts;
using LSVCR.Contracts;
using LSVCR.Jobs;
using LSVCR.Orchestration.Runs;
using LSVCR.Training;
using MassTransit;
using Microsoft.Extensions.Logging;

namespace LSVCR.Steps;

/// <summary>
/// Evaluates each task's model against popularity on the test split (<see cref="EvaluationJobService"/>, the job
/// `lsvcr evaluate` runs), writes the run's report, applies the quality gate and, when it passes, publishes the bundle
/// and <see cref="ModelPublished"/>.
/// </summary>
public sealed class EvaluateConsumer(EvaluationJobService job, ServingBundleJobService export, IArtifactStore store, TimeProvider clock, ILogger<EvaluateConsumer> logger)
    : StepConsumer<Evaluate>(logger)
{
    // camelCase like the Runs API: report.json and bundle.json are read by people and by Serving.
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { WriteIndented = true };

    protected override string StepName(Evaluate m) => StepKeys.Evaluation;
    protected override (Guid, string) Identify(Evaluate m) => (m.RunId, m.StepKey);

    protected override async Task RunAsync(ConsumeContext<Evaluate> context)
    {
        var m = context.Message;
        var ct = context.CancellationToken;
        var results = new List<EvaluationJobResult>();
        foreach (var (task, model) in m.Models.OrderBy(p => p.Key))
            results.Add(await job.RunAsync(new EvaluationJobRequest(m.Dataset.Files, m.Embeddings, model, RunSets.Evaluation(m.RunId, task)), ct: ct));

        var gate = m.Options.Gate;
        var verdicts = results.Select(r => (r.Task, Model: r.Model[0][gate.Metric], Popularity: r.Popularity[0][gate.Metric])).ToList();
        var failing = verdicts.Where(v => !(v.Model > v.Popularity * gate.MinLift)).ToList();
        var passed = !gate.Enabled || failing.Count == 0;
        var summary = string.Join("; ", verdicts.Select(v => string.Create(CultureInfo.InvariantCulture,
            $"{v.Task} {gate.Metric} {v.Model:F4} vs popularity {v.Popularity:F4}")));
        if (!passed) summary = $"does not beat popularity: {string.Join("; ", failing.Select(v => v.Task))} ({summary})";
        else if (!gate.Enabled) summary += " (quality gate disabled for this run)";

        var report = await PublishReportAsync(m, results, summary, ct);
        await context.Publish(new EvaluationCompleted(m.RunId, m.StepKey, report, passed, summary));
        if (!passed) return;

        var bundle = await PublishBundleAsync(m, report, ct);
        await context.Publish(new ModelPublished(m.RunId, bundle.ModelVersion, bundle.Bundle, report, clock.GetUtcNow()));
    }

    private async Task<ArtifactSetReference> PublishReportAsync(Evaluate m, List<EvaluationJobResult> results, string summary, CancellationToken ct)
    {
        var md = new StringBuilder($"# Run {m.RunId:N}\n\nDataset `{m.Dataset.DatasetId}`, test split. {summary}\n\n");
        foreach (var r in results)
        {
            md.Append(CultureInfo.InvariantCulture, $"## {r.Task}\n\n| model | protocol | {string.Join(" | ", ExperimentReport.Columns)} |\n");
            md.Append($"|---|---|{string.Concat(ExperimentReport.Columns.Select(_ => "---:|"))}\n");
            foreach (var (name, rows) in new[] { (r.Variant, r.Model), ("popularity", r.Popularity) })
                foreach (var row in rows)
                    md.Append(CultureInfo.InvariantCulture,
                        $"| {name} | {row.Protocol} | {string.Join(" | ", ExperimentReport.Columns.Select(c => row.Metrics.TryGetValue(c, out var v) ? v.ToString("F4", CultureInfo.InvariantCulture) : ""))} |\n");
            md.Append('\n');
        }
        var charts = new List<ReportChart>();
        foreach (var r in results)
        {
            // The fine-tuning step's checkpoint set carries the run's history.json.
            var checkpoint = await store.OpenAsync(m.Models[r.Task], ct);
            if (checkpoint.Manifest.Files.Any(f => f.Path == FineTuner.HistoryFile)
                && ReportCharts.ReadHistory(checkpoint.PathOf(FineTuner.HistoryFile)) is { Epochs.Count: > 0 } history)
                charts.Add(ReportCharts.Curves(r.Task.ToString(), [(r.Variant, history.Epochs)]));
        }
        foreach (var r in results)
            foreach (var (model, popularity) in r.Model.Zip(r.Popularity))
                if (model.Metrics.TryGetValue(ReportCharts.BarMetric, out var mv) && popularity.Metrics.TryGetValue(ReportCharts.BarMetric, out var pv))
                    charts.Add(ReportCharts.Bars(r.Task.ToString(), model.Protocol, [(r.Variant, mv), ("popularity", pv)]));
        md.Append(ReportCharts.Markdown(charts));
        var json = JsonSerializer.SerializeToUtf8Bytes(new { run = m.RunId, summary, tasks = results.Select(r => new { task = r.Task.ToString(), r.Variant, model = r.Model, popularity = r.Popularity }) },
            Json);
        await using var writer = store.CreateSet(RunSets.Report(m.RunId), "report");
        await writer.AddFileAsync("report.md", new MemoryStream(Encoding.UTF8.GetBytes(md.ToString())), ct);
        await writer.AddFileAsync("report.json", new MemoryStream(json), ct);
        foreach (var c in charts) await writer.AddFileAsync(c.FileName, new MemoryStream(c.Svg), ct);
        await writer.AddFileAsync(ReportCharts.HtmlFile, new MemoryStream(Encoding.UTF8.GetBytes(ReportCharts.Html($"Run {m.RunId:N}", md.ToString()))), ct);
        return await writer.CommitAsync(ct: ct);
    }

    /// <summary>The published model: the serving bundle (<see cref="ServingBundleJobService"/>: ONNX user encoders,
    /// candidate vectors, id maps, its manifest) with <c>bundle.json</c> beside it naming the checkpoint, dataset and
    /// embeddings sets it was exported from.</summary>
    private async Task<ServingBundleResult> PublishBundleAsync(Evaluate m, ArtifactSetReference report, CancellationToken ct)
    {
        var json = JsonSerializer.SerializeToUtf8Bytes(new
        {
            run = m.RunId, dataset = m.Dataset, embeddings = m.Embeddings, report,
            models = m.Models.ToDictionary(p => p.Key.FileStem(), p => p.Value),
        }, Json);
        ArtifactSetReference Model(TaskKind task) => m.Models.TryGetValue(task, out var model) ? model
            : throw new LsvcrException($"run {m.RunId:N}: no {task} model to publish (the serving bundle needs both tasks)", ErrorKind.BadInput);
        return await export.PublishAsync(new ServingBundleRequest(m.RunId.ToString("N"), m.Dataset.Files, m.Embeddings, Model(TaskKind.Rec), Model(TaskKind.CommRank),
            RunSets.Bundle(m.RunId), new Dictionary<string, byte[]> { ["bundle.json"] = json }), ct: ct);
    }
}
