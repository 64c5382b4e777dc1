using System.Diagnostics.Metrics;
using System.Text.Json;
using System.Text.Json.Serialization;
using LSVCR.Artifacts;
using LSVCR.Training;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace LSVCR.Jobs;

/// <summary>
/// The evaluation step as a service: scores a checkpoint set and the popularity baseline on the test split under every
/// protocol of the checkpoint's task (MODEL.md §5) and publishes <c>metrics.json</c> as a <c>report</c> set.
/// </summary>
public sealed class EvaluationJobService(IArtifactStore store, IOptions<EvaluationJobOptions> options, IOptions<JobsOptions> jobs,
    ILogger<EvaluationJobService> logger, IMeterFactory meters)
    : JobService(JobTelemetry.Evaluation, store, jobs, logger, meters)
{
    public const string Step = "evaluation", ArtifactKind = "report", MetricsFile = "metrics.json";

    /// <summary><c>metrics.json</c>.</summary>
    public sealed record MetricsDocument(
        [property: JsonPropertyName("task")] string Task,
        [property: JsonPropertyName("variant")] string Variant,
        [property: JsonPropertyName("model")] IReadOnlyList<EvalResult> Model,
        [property: JsonPropertyName("popularity")] IReadOnlyList<EvalResult> Popularity);

    private EvalOptions Evaluation(EvaluationJobRequest request)
    {
        var evaluation = request.Evaluation ?? options.Value.Evaluation;
        evaluation.Check();
        return evaluation;
    }

    public string StepKey(EvaluationJobRequest request) =>
        ContentHash.StepKey(Step, [request.Dataset.ContentSha256, request.Embeddings.ContentSha256, request.Checkpoint.ContentSha256],
            new { evaluation = Evaluation(request) });

    public async Task<EvaluationJobResult> RunAsync(EvaluationJobRequest request, IProgress<JobProgress>? progress = null, CancellationToken ct = default)
    {
        var evaluation = Evaluation(request);
        var runner = Runner();
        var (output, manifest) = await runner.RunAsync(Step, request.OutputSet, ArtifactKind, StepKey(request), async (work, relay, token) =>
        {
            var (data, photos, comments) = await TrainingInputs.LoadAsync(Store, request.Dataset, request.Embeddings, relay, token);
            var checkpoint = await Store.OpenAsync(request.Checkpoint, token);
            var document = await TorchGate.RunAsync(Step, () => Task.Factory.StartNew(() =>
            {
                var (model, info) = ModelStore.Load(checkpoint.Directory, photos, comments);
                using (model)
                {
                    var task = Protocols.ParseTask(info.Task);
                    bool drop = Variants.DropsComments(info.Variant);
                    var scorer = new ModelScorer(model);
                    var popularity = new PopularityScorer(data);
                    var protocols = Protocols.For(task);
                    return new MetricsDocument(info.Task, info.Variant,
                        protocols.Select(p => Evaluator.Evaluate(scorer, data, task, Split.Test, p, evaluation, drop, info.Config.MaxPosition, relay, token)).ToList(),
                        protocols.Select(p => Evaluator.Evaluate(popularity, data, task, Split.Test, p, evaluation, progress: relay, ct: token)).ToList());
                }
            }, token, TaskCreationOptions.LongRunning, TaskScheduler.Default));
            await File.WriteAllBytesAsync(Path.Combine(work, MetricsFile), JsonSerializer.SerializeToUtf8Bytes(document, JsonOptions), token);
            return new StepProduct(work, [MetricsFile], new Dictionary<string, string> { ["task"] = document.Task, ["variant"] = document.Variant });
        }, progress, ct);
        var opened = await Store.OpenAsync(output.Output, ct);
        var metrics = JsonSerializer.Deserialize<MetricsDocument>(await File.ReadAllBytesAsync(opened.PathOf(MetricsFile), ct), JsonOptions)
                      ?? throw new ArtifactCorruptException($"{Store.Name}:{manifest.Set}/{MetricsFile}: empty");
        return new EvaluationJobResult(output, Protocols.ParseTask(metrics.Task), metrics.Variant, metrics.Model, metrics.Popularity);
    }

    private static readonly JsonSerializerOptions JsonOptions = new() { WriteIndented = true };
}
