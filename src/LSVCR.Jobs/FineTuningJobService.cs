using System.Diagnostics.Metrics;
using System.Globalization;
using LSVCR.Artifacts;
using LSVCR.Training;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace LSVCR.Jobs;

/// <summary>
/// The fine-tuning step as a service: one task, one variant. Runs <see cref="FineTuner"/> in the step's work folder
/// (a retry on the same machine resumes at its last epoch) and publishes the best checkpoint (<c>best/</c>) and
/// <c>history.json</c> as a <c>checkpoint</c> set.
/// </summary>
public sealed class FineTuningJobService(IArtifactStore store, IOptions<FineTuningJobOptions> options, IOptions<JobsOptions> jobs,
    ILogger<FineTuningJobService> logger, IMeterFactory meters)
    : JobService(JobTelemetry.FineTuning, store, jobs, logger, meters)
{
    public const string Step = "fine-tuning", ArtifactKind = "checkpoint";

    private TrainOptions Training(FineTuningJobRequest request)
    {
        var training = request.Training ?? options.Value.Training;
        JobOptionsValidator.NoInitPath(training);
        training.Check();
        Variants.Check(request.Variant);
        if (!Variants.IsTrained(request.Variant)) throw new LsvcrException($"variant '{request.Variant}' has no model to train");
        return training;
    }

    /// <summary>The step key: content hashes of the dataset, the embeddings and the initial weights, plus task, variant
    /// and every option that changes the trajectory (not thread counts, not the epoch budget's paths).</summary>
    public string StepKey(FineTuningJobRequest request)
    {
        var training = Training(request);
        return ContentHash.StepKey(Step,
            [request.Dataset.ContentSha256, request.Embeddings.ContentSha256, request.Init?.ContentSha256 ?? "no-init"],
            new { task = request.Task.ToString(), variant = request.Variant, training = TrainingInputs.KeyOf(training), validation = options.Value.Validation });
    }

    public async Task<FineTuningJobResult> RunAsync(FineTuningJobRequest request, IProgress<JobProgress>? progress = null, CancellationToken ct = default)
    {
        var training = Training(request);
        var runner = Runner();
        var (output, manifest) = await runner.RunAsync(Step, request.OutputSet, ArtifactKind, StepKey(request), async (work, relay, token) =>
        {
            var (data, photos, comments) = await TrainingInputs.LoadAsync(Store, request.Dataset, request.Embeddings, relay, token);
            if (request.Init is { } init)
            {
                // A checkpoint set is a model folder; a stage-1 alignment set holds the aligned SR weights as one file.
                var dir = (await Store.OpenAsync(init, token)).Directory;
                var aligned = Path.Combine(dir, LSVCR.Alignment.AlignTrainer.SrFile);
                training = training with { Init = File.Exists(aligned) ? aligned : dir };
            }
            var runDir = Path.Combine(work, "run");
            var result = await TorchGate.RunAsync(Step, () =>
                FineTuner.RunAsync(data, photos, comments, request.Task, request.Variant, runDir, training, options.Value.Validation, relay, token));
            var files = Directory.EnumerateFiles(Path.Combine(runDir, FineTuner.BestDir), "*", SearchOption.AllDirectories)
                .Select(f => Path.GetRelativePath(runDir, f).Replace(Path.DirectorySeparatorChar, '/'))
                .Append(FineTuner.HistoryFile).Order(StringComparer.Ordinal).ToList();
            return new StepProduct(runDir, files, new Dictionary<string, string>
            {
                ["task"] = Protocols.TaskName(request.Task), ["variant"] = request.Variant,
                ["epochs_run"] = TrainingInputs.Invariant(result.EpochsRun), ["best_epoch"] = TrainingInputs.Invariant(result.BestEpoch),
                ["best_val_ndcg5"] = TrainingInputs.Invariant(result.BestValNdcg5), ["stopped_early"] = result.StoppedEarly ? "true" : "false",
            });
        }, progress, ct);
        var m = manifest.Metadata;
        return new FineTuningJobResult(output, Protocols.ParseTask(m["task"]), m["variant"], int.Parse(m["epochs_run"], CultureInfo.InvariantCulture),
            int.Parse(m["best_epoch"], CultureInfo.InvariantCulture), double.Parse(m["best_val_ndcg5"], CultureInfo.InvariantCulture));
    }
}
