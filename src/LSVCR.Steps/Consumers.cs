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

/// <summary>
/// Starts the embeddings step: when the output is already published it republishes <see cref="EmbeddingsComputed"/>;
/// otherwise it publishes the chunk plan of <see cref="EmbeddingsJobService"/> and one <see cref="ComputeEmbeddingChunk"/>
/// per chunk, which any number of Embeddings instances share (competing consumers).
/// </summary>
public sealed class ComputeEmbeddingsConsumer(EmbeddingsJobService job, ILogger<ComputeEmbeddingsConsumer> logger)
    : StepConsumer<ComputeEmbeddings>(logger)
{
    protected override string StepName(ComputeEmbeddings m) => StepKeys.Embeddings;
    protected override (Guid, string) Identify(ComputeEmbeddings m) => (m.RunId, m.StepKey);

    protected override async Task RunAsync(ConsumeContext<ComputeEmbeddings> context)
    {
        var m = context.Message;
        var request = EmbeddingRequests.For(m.Dataset, m.Options);
        if (await EmbeddingRequests.RepublishIfDoneAsync(job, request, m.RunId, m.StepKey, context, context.CancellationToken)) return;
        var plan = await job.PlanChunksAsync(request, context.CancellationToken);
        for (int k = 0; k < plan.Chunks; k++)
            await context.Publish(new ComputeEmbeddingChunk(m.RunId, m.StepKey, m.Dataset, m.Options, plan.Plan, plan.Key, k, plan.Chunks));
    }
}

/// <summary>
/// Encodes one chunk and stores it (a redelivered chunk finds it stored and encodes nothing); the instance that finds
/// every chunk stored assembles the <c>.npy</c> artifacts (published manifest-last) and publishes <see cref="EmbeddingsComputed"/>.
/// </summary>
public sealed class ComputeEmbeddingChunkConsumer(EmbeddingsJobService job, ILogger<ComputeEmbeddingChunkConsumer> logger)
    : StepConsumer<ComputeEmbeddingChunk>(logger)
{
    protected override string StepName(ComputeEmbeddingChunk m) => StepKeys.Embeddings;
    protected override (Guid, string) Identify(ComputeEmbeddingChunk m) => (m.RunId, m.StepKey);

    protected override async Task RunAsync(ConsumeContext<ComputeEmbeddingChunk> context)
    {
        var m = context.Message;
        var ct = context.CancellationToken;
        var request = EmbeddingRequests.For(m.Dataset, m.Options);
        // A chunk delivered again after the output was assembled (and the chunks removed) has nothing left to do.
        if (await EmbeddingRequests.RepublishIfDoneAsync(job, request, m.RunId, m.StepKey, context, ct)) return;
        var plan = new EmbeddingChunkPlan(m.Plan, m.Chunks, m.PlanKey);
        var part = await job.ComputeChunkAsync(request, plan, m.Chunk, ct);
        var present = await job.CountChunksAsync(request, plan, ct);
        await context.Publish(new EmbeddingChunkComputed(m.RunId, m.StepKey, m.Chunk, m.Chunks, present, part.Output));
        await context.Publish(new StepProgressed(m.RunId, m.StepKey, StepKeys.Embeddings, "chunks", present, m.Chunks, null));
        if (present == m.Chunks && await job.TryAssembleAsync(request, plan, ct) is { } result)
            await context.Publish(new EmbeddingsComputed(m.RunId, m.StepKey, result.Job.Output));
    }
}

/// <summary>The embeddings request of a run: keyed by dataset and encoder, not by run, so every run on the same dataset
/// shares the set (the job reuses it).</summary>
public static class EmbeddingRequests
{
    public static EmbeddingsJobRequest For(DatasetReference dataset, PipelineRunOptions options) =>
        new(dataset.Files, $"embeddings/{dataset.DatasetId}/{options.Encoder}")
        {
            Embed = new LSVCR.Embeddings.EmbedOptions { Encoder = options.Encoder, ChunkSize = options.EmbeddingChunkSize },
        };

    /// <summary>When the output is already published, republishes <see cref="EmbeddingsComputed"/> and returns true.</summary>
    public static async Task<bool> RepublishIfDoneAsync(EmbeddingsJobService job, EmbeddingsJobRequest request, Guid runId, string stepKey,
        IPublishEndpoint publish, CancellationToken ct)
    {
        if (await job.TryGetOutputAsync(request, ct) is not { } done) return false;
        await publish.Publish(new EmbeddingsComputed(runId, stepKey, done.Output), ct);
        return true;
    }
}

/// <summary>Fine-tunes one task with <see cref="FineTuningJobService"/> (the job `lsvcr train` runs).</summary>
public sealed class FineTuneConsumer(FineTuningJobService job, IOptions<FineTuningJobOptions> options, ILogger<FineTuneConsumer> logger)
    : StepConsumer<FineTune>(logger)
{
    protected override string StepName(FineTune m) => StepKeys.FineTuning(m.Task);
    protected override (Guid, string) Identify(FineTune m) => (m.RunId, m.StepKey);

    // Runs durably (DurableSteps): training outlasts the broker's acknowledgement timeout.
    protected override async Task RunAsync(FineTune m, IPublishEndpoint publish, CancellationToken ct)
    {
        var settings = m.Options.FineTune;
        var defaults = options.Value.Training; // the host's settings (threads, shards); the run's keys override the rest
        var request = new FineTuningJobRequest(m.Dataset.Files, m.Embeddings, m.Task, RunSets.Model(m.RunId, m.Task))
        {
            Variant = settings.Variant,
            Init = m.Alignment,
            Training = settings.Resolve(defaults),
        };
        var result = await job.RunAsync(request, ct: ct);
        await publish.Publish(new FineTuningCompleted(m.RunId, m.StepKey, m.Task, result.Job.Output), ct);
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
