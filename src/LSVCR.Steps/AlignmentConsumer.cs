using LSVCR.Contracts;
using LSVCR.Jobs;
using LSVCR.Orchestration.Runs;
using MassTransit;
using Microsoft.Extensions.Logging;

namespace LSVCR.Steps;

/// <summary>Stage-1 alignment with <see cref="AlignmentJobService"/> (the job `lsvcr align` runs): publishes the aligned SR
/// weights, which fine-tuning starts from, and the items re-encoded by the aligned LLM, which fine-tuning reads.</summary>
public sealed class AlignPreferencesConsumer(AlignmentJobService job, ILogger<AlignPreferencesConsumer> logger)
    : StepConsumer<AlignPreferences>(logger)
{
    protected override string StepName(AlignPreferences m) => StepKeys.Alignment;
    protected override (Guid, string) Identify(AlignPreferences m) => (m.RunId, m.StepKey);

    // Runs durably (DurableSteps), as fine-tuning does: stage 1 outlasts the broker's acknowledgement timeout.
    protected override async Task RunAsync(AlignPreferences m, IPublishEndpoint publish, CancellationToken ct)
    {
        var request = new AlignmentJobRequest(m.Dataset.Files, RunSets.Alignment(m.RunId), RunSets.AlignedEmbeddings(m.RunId));
        var result = await job.RunAsync(request, ct: ct);
        await publish.Publish(new AlignmentCompleted(m.RunId, m.StepKey, result.Job.Output, result.Embeddings), ct);
    }
}
