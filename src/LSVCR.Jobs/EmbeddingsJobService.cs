using LSVCR.Artifacts;
using LSVCR.Data;
using LSVCR.Embeddings;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using System.Diagnostics.Metrics;

namespace LSVCR.Jobs;

/// <summary>
/// The embeddings step as a service: opens the dataset set, runs <see cref="EmbeddingJob"/> (resumable chunks in the
/// step's work folder) and publishes <c>photo_embs.npy</c>, <c>comment_embs.npy</c> and <c>embeddings.json</c>.
/// </summary>
public sealed class EmbeddingsJobService(IArtifactStore store, IOptions<EmbeddingsJobOptions> options, IOptions<JobsOptions> jobs,
    ILogger<EmbeddingsJobService> logger, IMeterFactory meters) : IDisposable
{
    public const string Step = "embeddings", ArtifactKind = "embeddings";
    private readonly JobTelemetry telemetry = new(JobTelemetry.Embeddings, meters);

    private EmbedOptions Embed(EmbeddingsJobRequest request)
    {
        var embed = request.Embed ?? options.Value.Embed;
        embed.Validate();
        return embed;
    }

    /// <summary>The step key: the dataset's content hash and everything that changes the vectors (the encoder by its
    /// fingerprint — model bytes, tokenizer, token limit, pooling — not by its path).</summary>
    public string StepKey(EmbeddingsJobRequest request)
    {
        var embed = Embed(request);
        var fingerprint = TextEmbedder.Resolve(embed).Fingerprint;
        return ContentHash.StepKey(Step, [request.Dataset.ContentSha256],
            new { fingerprint, instruction = embed.Instruction ?? "", embed.BatchSize, embed.Device });
    }

    public async Task<EmbeddingsJobResult> RunAsync(EmbeddingsJobRequest request, IProgress<JobProgress>? progress = null, CancellationToken ct = default)
    {
        var embed = Embed(request);
        var runner = new StepRunner(store, telemetry, logger, jobs.Value.WorkDirectory);
        var (output, manifest) = await runner.RunAsync(Step, request.OutputSet, ArtifactKind, StepKey(request), async (work, relay, token) =>
        {
            var dataset = await store.OpenAsync(request.Dataset, token);
            var catalog = ReferenceLayout.ReadCatalog(dataset.Directory, relay);
            var written = await EmbeddingJob.RunAsync(catalog, work, embed, relay, token);
            return new StepProduct(work, [EmbeddingManifest.PhotoFile, EmbeddingManifest.CommentFile, EmbeddingManifest.FileName], new Dictionary<string, string>
            {
                ["encoder"] = written.Encoder, ["dimension"] = written.Dimension.ToString(System.Globalization.CultureInfo.InvariantCulture),
                ["dataset_text_hash"] = written.DatasetHash,
            });
        }, progress, ct);
        return new EmbeddingsJobResult(output, manifest.Metadata["encoder"], int.Parse(manifest.Metadata["dimension"], System.Globalization.CultureInfo.InvariantCulture));
    }

    public void Dispose() => telemetry.Dispose();
}
