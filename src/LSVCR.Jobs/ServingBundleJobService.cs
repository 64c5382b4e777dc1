using LSVCR.Artifacts;
using LSVCR.Serving;
using LSVCR.Serving.Export;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace LSVCR.Jobs;

/// <summary>What the publish step exports: the run's dataset, embeddings and the two tasks' checkpoint sets.</summary>
public sealed record ServingBundleRequest(string TrainingRun, ArtifactSetReference Dataset, ArtifactSetReference Embeddings,
    ArtifactSetReference Rec, ArtifactSetReference CommRank, string OutputSet, IReadOnlyDictionary<string, byte[]>? ExtraFiles = null);

/// <summary>The published bundle and the model version its manifest carries.</summary>
public sealed record ServingBundleResult(ArtifactSetReference Bundle, string ModelVersion);

/// <summary>
/// The publish step's export: <see cref="BundleExporter"/> (what <c>lsvcr export</c> runs) over the run's artifact sets,
/// published as one <c>serving-bundle</c> set (files first, the store's manifest last; the set's metadata carries the
/// model version). Idempotent under redelivery: a set already published under the id is returned as it is (a re-export
/// would differ in its timestamp, and sets are immutable).
/// </summary>
public sealed class ServingBundleJobService(IArtifactStore store, IOptions<JobsOptions> jobs, ILogger<ServingBundleJobService> logger)
{
    public const string ArtifactKind = "serving-bundle", VersionKey = "model_version";

    public async Task<ServingBundleResult> PublishAsync(ServingBundleRequest request, CancellationToken ct = default)
    {
        if (await store.TryGetManifestAsync(request.OutputSet, ct) is { } existing)
        {
            if (existing.Kind != ArtifactKind || !existing.Metadata.TryGetValue(VersionKey, out var version))
                throw new LsvcrException($"{store.Name}:{request.OutputSet}: already holds a '{existing.Kind}' set without a model version, not a serving bundle");
            logger.LogInformation("Serving bundle {Set} ({Version}) was already published", request.OutputSet, version);
            return new ServingBundleResult(existing.ToReference(store.Name), version);
        }
        var dataset = await store.OpenAsync(request.Dataset, ct);
        var embeddings = await store.OpenAsync(request.Embeddings, ct);
        var rec = await store.OpenAsync(request.Rec, ct);
        var commRank = await store.OpenAsync(request.CommRank, ct);
        var work = Path.Combine(jobs.Value.WorkDirectory, "serving-bundle", $"{Guid.NewGuid():N}");
        var output = Path.Combine(work, "bundle");
        try
        {
            var manifest = await TorchGate.RunAsync("serving export", () => Task.Factory.StartNew(() => BundleExporter.Export(new ExportOptions
            {
                Rec = rec.Directory, CommRank = commRank.Directory, Data = dataset.Directory, Embeddings = embeddings.Directory,
                Out = output, TrainingRun = request.TrainingRun,
                DatasetLabel = $"{request.Dataset.Store}:{request.Dataset.Set}", EmbeddingsLabel = $"{request.Embeddings.Store}:{request.Embeddings.Set}",
            }), ct, TaskCreationOptions.LongRunning, TaskScheduler.Default));
            foreach (var (name, bytes) in request.ExtraFiles ?? new Dictionary<string, byte[]>())
                await File.WriteAllBytesAsync(Path.Combine(output, name), bytes, ct);
            var reference = await store.PublishDirectoryAsync(request.OutputSet, ArtifactKind, output,
                new Dictionary<string, string> { [VersionKey] = manifest.ModelVersion }, ct);
            logger.LogInformation("Serving bundle {Version} published as {Set} ({Bytes} bytes)", manifest.ModelVersion, reference.Set, reference.Size);
            return new ServingBundleResult(reference, manifest.ModelVersion);
        }
        finally
        {
            try { if (Directory.Exists(work)) Directory.Delete(work, recursive: true); }
            catch (IOException e) { logger.LogWarning("Could not remove {Work}: {Error}", work, e.Message); }
        }
    }
}
