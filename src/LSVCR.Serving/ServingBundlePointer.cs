using LSVCR.Artifacts;

namespace LSVCR.Serving;

/// <summary>
/// The artifact store's record of the latest published serving bundle: the pointer <c>serving/latest</c>
/// (<see cref="IArtifactStore.SetPointerAsync"/>) at the bundle's set, with its model version. The publish step writes it
/// after the bundle set is visible (so the pointer is the last thing written); serving instances poll it as the fallback
/// to <c>ModelPublished</c>, so one that was down or disconnected when a model was published still finds it.
/// </summary>
public static class ServingBundlePointer
{
    public const string DefaultName = "serving/latest", VersionKey = "model_version";

    /// <summary>Points <paramref name="name"/> at <paramref name="bundle"/> (a visible set; an error otherwise). Last writer wins.</summary>
    public static Task<ArtifactPointer> WriteAsync(IArtifactStore store, ArtifactSetReference bundle, string modelVersion,
        string name = DefaultName, CancellationToken ct = default)
    {
        if (string.IsNullOrWhiteSpace(modelVersion)) throw new LsvcrException($"serving bundle pointer '{name}': the model version is empty");
        return store.SetPointerAsync(name, bundle, new Dictionary<string, string> { [VersionKey] = modelVersion }, ct);
    }

    /// <summary>The bundle the pointer names and its model version, or null when no bundle was published yet.</summary>
    public static async Task<(ArtifactSetReference Bundle, string ModelVersion)?> TryReadAsync(IArtifactStore store,
        string name = DefaultName, CancellationToken ct = default)
    {
        if (await store.TryGetPointerAsync(name, ct) is not { } pointer) return null;
        if (!pointer.Metadata.TryGetValue(VersionKey, out var version) || string.IsNullOrWhiteSpace(version))
            throw new ArtifactCorruptException($"{store.Name}:{ArtifactPaths.PointersFolder}/{name}.json: the pointer carries no {VersionKey}");
        return (pointer.Target, version);
    }
}
