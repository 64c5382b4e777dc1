using System.Diagnostics.Metrics;
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
public sealed record ServingBundleResult(ArtifactSetReference Bundle, string ModelVersion, string StepKey, bool Reused);

/// <summary>
/// The publish step's export: <see cref="BundleExporter"/> (what <c>lsvcr export</c> runs) over the run's artifact sets,
/// published through <see cref="StepRunner"/> as one <c>serving-bundle</c> set (files first, the store's manifest last;
/// the set's metadata carries the model version). Keyed like every step by its inputs' content hashes, so a redelivery
/// reuses the published set (a re-export would differ in its timestamp, and sets are immutable) and a set published
/// from other inputs under the same id is refused.
/// </summary>
public sealed class ServingBundleJobService(IArtifactStore store, IOptions<JobsOptions> jobs, ILogger<ServingBundleJobService> logger, IMeterFactory meters)
    : JobService(JobTelemetry.Publishing, store, jobs, logger, meters)
{
    public const string Step = "serving-bundle", ArtifactKind = "serving-bundle", VersionKey = "model_version";

    /// <summary>The four input sets' content hashes, the training run the bundle names and the extra files' bytes.</summary>
    public static string StepKey(ServingBundleRequest request) =>
        ContentHash.StepKey(Step, [request.Dataset.ContentSha256, request.Embeddings.ContentSha256, request.Rec.ContentSha256, request.CommRank.ContentSha256],
            new
            {
                trainingRun = request.TrainingRun,
                extra = (request.ExtraFiles ?? new Dictionary<string, byte[]>()).OrderBy(p => p.Key, StringComparer.Ordinal)
                    .Select(p => new { name = p.Key, sha256 = ContentHash.Of(p.Value) }),
            });

    public async Task<ServingBundleResult> PublishAsync(ServingBundleRequest request, IProgress<JobProgress>? progress = null, CancellationToken ct = default)
    {
        var key = StepKey(request);
        var (output, manifest) = await Runner().RunAsync(Step, request.OutputSet, ArtifactKind, key, async (work, relay, token) =>
        {
            var dataset = await Store.OpenAsync(request.Dataset, token);
            var embeddings = await Store.OpenAsync(request.Embeddings, token);
            var rec = await Store.OpenAsync(request.Rec, token);
            var commRank = await Store.OpenAsync(request.CommRank, token);
            var bundle = Path.Combine(work, "bundle");
            var exported = await TorchGate.RunAsync("serving export", () => Task.Factory.StartNew(() => BundleExporter.Export(new ExportOptions
            {
                Rec = rec.Directory, CommRank = commRank.Directory, Data = dataset.Directory, Embeddings = embeddings.Directory,
                Out = bundle, TrainingRun = request.TrainingRun,
                DatasetLabel = $"{request.Dataset.Store}:{request.Dataset.Set}", EmbeddingsLabel = $"{request.Embeddings.Store}:{request.Embeddings.Set}",
            }, relay), token, TaskCreationOptions.LongRunning, TaskScheduler.Default));
            foreach (var (name, bytes) in request.ExtraFiles ?? new Dictionary<string, byte[]>())
            {
                if (File.Exists(Path.Combine(bundle, name)))
                    throw new LsvcrException($"serving bundle: extra file '{name}' would replace the bundle's own file of that name");
                await File.WriteAllBytesAsync(Path.Combine(bundle, name), bytes, token);
            }
            var files = Directory.GetFiles(bundle).Select(Path.GetFileName).OfType<string>().Order(StringComparer.Ordinal).ToList();
            return new StepProduct(bundle, files, new Dictionary<string, string> { [VersionKey] = exported.ModelVersion });
        }, progress, ct);
        if (manifest.Kind != ArtifactKind || !manifest.Metadata.TryGetValue(VersionKey, out var version))
            throw new LsvcrException($"{Store.Name}:{request.OutputSet}: holds a '{manifest.Kind}' set without a model version, not a serving bundle");
        await PointAtAsync(output, version, ct);
        return new ServingBundleResult(output.Output, version, key, output.Reused);
    }

    /// <summary>
    /// The store's <c>serving/latest</c> pointer (<see cref="ServingBundlePointer"/>), written after the set is visible: the
    /// fallback by which a Serving instance that missed <c>ModelPublished</c> finds the model. A reused set sets the
    /// pointer only when it is unset (a crash between the set and the pointer), so a redelivered old publish never
    /// turns the pointer back to an older bundle.
    /// </summary>
    private async Task PointAtAsync(JobOutput output, string version, CancellationToken ct)
    {
        if (output.Reused && await ServingBundlePointer.TryReadAsync(Store, ct: ct) is not null) return;
        await ServingBundlePointer.WriteAsync(Store, output.Output, version, ct: ct);
    }
}
