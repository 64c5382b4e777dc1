using System.Diagnostics.Metrics;
using System.Globalization;
using LSVCR.Alignment;
using LSVCR.Artifacts;
using LSVCR.Data;
using LSVCR.Training;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace LSVCR.Jobs;

/// <summary>
/// Stage 1 (MODEL.md §3) as a service: <see cref="AlignTrainer"/> on the dataset set, publishing two sets — the items
/// re-encoded by the aligned LLM (an <c>embeddings</c> set: <c>photo_embs.npy</c>, <c>comment_embs.npy</c>) first, then
/// the aligned weights (an <c>alignment</c> set: <c>reccom.safetensors</c>, the stage-2 initialisation, with the LoRA and
/// head weights and <c>align.json</c>). The weights set is written last and names the embeddings set in its metadata,
/// so its presence means the whole step is done; a retry after a kill between the two finds the embeddings set
/// already published under the same step key and reuses it.
/// </summary>
public sealed class AlignmentJobService(IArtifactStore store, IOptions<AlignmentJobOptions> options, IOptions<JobsOptions> jobs,
    ILogger<AlignmentJobService> logger, IMeterFactory meters)
    : JobService(JobTelemetry.Alignment, store, jobs, logger, meters)
{
    public const string Step = "alignment", ArtifactKind = "alignment", EmbeddingsStep = "alignment-embeddings";
    private const string EmbeddingsSetMetadata = "embeddings_set";

    private AlignOptions Align(AlignmentJobRequest request)
    {
        var align = request.Align ?? options.Value.Align;
        align.Validate();
        return align;
    }

    /// <summary>The step key: the dataset's content hash and every option that changes the result (not threads).</summary>
    public string StepKey(AlignmentJobRequest request) => StepKey(request, Align(request));

    private static string StepKey(AlignmentJobRequest request, AlignOptions align) =>
        ContentHash.StepKey(Step, [request.Dataset.ContentSha256], new { align = align with { Threads = null } });

    public async Task<AlignmentJobResult> RunAsync(AlignmentJobRequest request, IProgress<JobProgress>? progress = null, CancellationToken ct = default)
    {
        var align = Align(request);
        ArtifactPaths.CheckSet(request.EmbeddingsSet);
        var key = StepKey(request, align);
        var runner = Runner();
        var (output, manifest) = await runner.RunAsync(Step, request.OutputSet, ArtifactKind, key, async (work, relay, token) =>
        {
            var data = ReferenceLayout.Read((await Store.OpenAsync(request.Dataset, token)).Directory, relay);
            var runDir = Path.Combine(work, "run"); // AlignTrainer checkpoints here: a retry on this machine resumes
            var result = await TorchGate.RunAsync(Step, () => Task.Factory.StartNew(() => AlignTrainer.Run(data, align, runDir, relay, token),
                token, TaskCreationOptions.LongRunning, TaskScheduler.Default));
            var embeddings = await runner.RunAsync(EmbeddingsStep, request.EmbeddingsSet, EmbeddingsJobService.ArtifactKind, key,
                (_, _, _) => Task.FromResult(new StepProduct(result.EmbeddingsDir, [TextEmbeddings.PhotoFile, TextEmbeddings.CommentFile],
                    new Dictionary<string, string> { ["encoder"] = $"aligned:{result.Backbone}" })), relay, token);
            return new StepProduct(runDir, [AlignTrainer.SrFile, AlignTrainer.LoraFile, AlignTrainer.HeadsFile, AlignTrainer.SummaryFile],
                new Dictionary<string, string>
                {
                    ["backbone"] = result.Backbone, ["examples"] = TrainingInputs.Invariant(result.Examples),
                    ["optimizer_steps"] = TrainingInputs.Invariant(result.OptimizerSteps), ["train_seconds"] = TrainingInputs.Invariant(result.TrainSeconds),
                    [EmbeddingsSetMetadata] = embeddings.Output.Output.Set,
                });
        }, progress, ct);
        var m = manifest.Metadata;
        var embeddingsManifest = await Store.TryGetManifestAsync(m[EmbeddingsSetMetadata], ct)
                                 ?? throw new LsvcrException($"{Store.Name}:{m[EmbeddingsSetMetadata]}: the alignment's embeddings set is missing", ErrorKind.Internal);
        return new AlignmentJobResult(output, embeddingsManifest.ToReference(Store.Name), m["backbone"],
            int.Parse(m["examples"], CultureInfo.InvariantCulture), double.Parse(m["train_seconds"], CultureInfo.InvariantCulture));
    }
}
