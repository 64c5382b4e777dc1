using System.Diagnostics.Metrics;
using System.Text.Json;
using LSVCR.Artifacts;
using LSVCR.Training;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace LSVCR.Jobs;

/// <summary>
/// The experiment as a service: <see cref="ExperimentRunner"/> over the requested variants and tasks (resumable in the
/// step's work folder), publishing <c>report.md</c>, <c>report.json</c> and each trained variant's
/// <c>{task}/{variant}/history.json</c> as a <c>report</c> set.
/// </summary>
public sealed class ExperimentJobService(IArtifactStore store, IOptions<ExperimentJobOptions> options, IOptions<JobsOptions> jobs,
    ILogger<ExperimentJobService> logger, IMeterFactory meters)
    : JobService(JobTelemetry.Experiments, store, jobs, logger, meters)
{
    public const string Step = "experiment", ArtifactKind = "report";

    private (TrainOptions Training, EvalOptions Evaluation) Settings(ExperimentJobRequest request)
    {
        var training = request.Training ?? options.Value.Training;
        var evaluation = request.Evaluation ?? options.Value.Evaluation;
        JobOptionsValidator.NoInitPath(training);
        training.Check();
        evaluation.Check();
        foreach (var v in request.Variants) Variants.Check(v);
        return (training, evaluation);
    }

    public string StepKey(ExperimentJobRequest request)
    {
        var (training, evaluation) = Settings(request);
        return ContentHash.StepKey(Step, [request.Dataset.ContentSha256, request.Embeddings.ContentSha256],
            new { variants = request.Variants, tasks = request.Tasks.Select(t => t.ToString()), training = TrainingInputs.KeyOf(training), evaluation });
    }

    public async Task<ExperimentJobResult> RunAsync(ExperimentJobRequest request, IProgress<JobProgress>? progress = null, CancellationToken ct = default)
    {
        var (training, evaluation) = Settings(request);
        var runner = Runner();
        var (output, _) = await runner.RunAsync(Step, request.OutputSet, ArtifactKind, StepKey(request), async (work, relay, token) =>
        {
            var (data, photos, comments) = await TrainingInputs.LoadAsync(Store, request.Dataset, request.Embeddings, relay, token);
            var runDir = Path.Combine(work, "run");
            await TorchGate.RunAsync(Step, () => ExperimentRunner.RunAsync(data, photos, comments, new ExperimentOptions
            {
                OutDir = runDir, Variants = request.Variants, Tasks = request.Tasks, Training = training, Evaluation = evaluation,
            }, relay, token));
            var files = new List<string> { ExperimentRunner.ReportJson, ExperimentRunner.ReportMarkdown, ReportCharts.HtmlFile };
            files.AddRange(Directory.EnumerateFiles(runDir, "*.svg").Select(f => Path.GetFileName(f)).Order(StringComparer.Ordinal));
            foreach (var task in request.Tasks)
                foreach (var variant in request.Variants.Where(Variants.IsTrained))
                    if (File.Exists(Path.Combine(runDir, Protocols.TaskName(task), variant, FineTuner.HistoryFile)))
                        files.Add($"{Protocols.TaskName(task)}/{variant}/{FineTuner.HistoryFile}");
            return new StepProduct(runDir, files, new Dictionary<string, string>());
        }, progress, ct);
        var opened = await Store.OpenAsync(output.Output, ct);
        var report = JsonSerializer.Deserialize<ExperimentReport>(await File.ReadAllBytesAsync(opened.PathOf(ExperimentRunner.ReportJson), ct))
                     ?? throw new ArtifactCorruptException($"{Store.Name}:{output.Output.Set}/{ExperimentRunner.ReportJson}: empty");
        return new ExperimentJobResult(output, report);
    }
}
