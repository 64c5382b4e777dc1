using LSVCR.Contracts;
using LSVCR.Jobs;
using LSVCR.Orchestration.Runs;
using LSVCR.Training;
using MassTransit;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace LSVCR.Steps;

/// <summary>Writes a run's synthetic dataset (hosted by the Embeddings service, which reads the data next).</summary>
public sealed class GenerateDatasetConsumer(DatasetIntake intake, ILogger<GenerateDatasetConsumer> logger)
    : StepConsumer<GenerateDataset>(logger)
{
    protected override string StepName(GenerateDataset m) => StepKeys.Dataset;
    protected override (Guid, string) Identify(GenerateDataset m) => (m.RunId, m.StepKey);

    protected override async Task RunAsync(ConsumeContext<GenerateDataset> context)
    {
        var m = context.Message;
        var dataset = await intake.SyntheticAsync(m.Spec, context.CancellationToken);
        await context.Publish(new DatasetGenerated(m.RunId, m.StepKey, dataset));
    }
}

/// <summary>Encodes the dataset's texts with <see cref="EmbeddingsJobService"/> (the job `lsvcr embed` runs).</summary>
public sealed class ComputeEmbeddingsConsumer(EmbeddingsJobService job, ILogger<ComputeEmbeddingsConsumer> logger)
    : StepConsumer<ComputeEmbeddings>(logger)
{
    protected override string StepName(ComputeEmbeddings m) => StepKeys.Embeddings;
    protected override (Guid, string) Identify(ComputeEmbeddings m) => (m.RunId, m.StepKey);

    protected override async Task RunAsync(ConsumeContext<ComputeEmbeddings> context)
    {
        var m = context.Message;
        // Keyed by dataset and encoder, not by run: every run on the same dataset shares the set (the job reuses it).
        var request = new EmbeddingsJobRequest(m.Dataset.Files, $"embeddings/{m.Dataset.DatasetId}/{m.Options.Encoder}")
        {
            Embed = new LSVCR.Embeddings.EmbedOptions { Encoder = m.Options.Encoder, ChunkSize = m.Options.EmbeddingChunkSize },
        };
        var result = await job.RunAsync(request, ct: context.CancellationToken);
        await context.Publish(new EmbeddingsComputed(m.RunId, m.StepKey, result.Job.Output));
    }
}

/// <summary>Fine-tunes one task with <see cref="FineTuningJobService"/> (the job `lsvcr train` runs).</summary>
public sealed class FineTuneConsumer(FineTuningJobService job, IOptions<FineTuningJobOptions> options, ILogger<FineTuneConsumer> logger)
    : StepConsumer<FineTune>(logger)
{
    protected override string StepName(FineTune m) => StepKeys.FineTuning(m.Task);
    protected override (Guid, string) Identify(FineTune m) => (m.RunId, m.StepKey);

    protected override async Task RunAsync(ConsumeContext<FineTune> context)
    {
        var m = context.Message;
        var settings = m.Options.FineTune;
        var defaults = options.Value.Training; // the host's settings (threads, shards); the run's keys override the rest
        var request = new FineTuningJobRequest(m.Dataset.Files, m.Embeddings, m.Task, RunSets.Model(m.RunId, m.Task))
        {
            Variant = settings.Variant,
            Init = m.Alignment,
            Training = settings.Resolve(defaults),
        };
        var result = await job.RunAsync(request, ct: context.CancellationToken);
        await context.Publish(new FineTuningCompleted(m.RunId, m.StepKey, m.Task, result.Job.Output));
    }
}

/// <summary>Where a run's sets go in the store.</summary>
public static class RunSets
{
    public static string Run(Guid runId) => $"runs/{runId:N}";
    public static string Alignment(Guid runId) => $"{Run(runId)}/alignment";
    public static string AlignedEmbeddings(Guid runId) => $"{Run(runId)}/alignment-embeddings";
    public static string Model(Guid runId, TaskKind task) => $"{Run(runId)}/{task.FileStem()}";
    public static string Evaluation(Guid runId, TaskKind task) => $"{Run(runId)}/evaluation/{task.FileStem()}";
    public static string Report(Guid runId) => $"{Run(runId)}/report";
    public static string Bundle(Guid runId) => $"{Run(runId)}/bundle";
}
