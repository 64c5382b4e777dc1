namespace LSVCR.Contracts;

/// <summary>
/// A published artifact set: its files and the manifest that was written last (an artifact set exists only once its
/// manifest does). Messages carry these references, never the bytes.
/// </summary>
/// <param name="Prefix">The set's folder inside the store, e.g. <c>runs/{run}/rec</c>.</param>
public sealed record ArtifactSetReference(string Prefix, ArtifactReference Manifest, IReadOnlyList<ArtifactReference> Files)
{
    /// <summary>The file of the set whose path ends with <paramref name="name"/> (e.g. <c>photo_embs.npy</c>).</summary>
    public ArtifactReference File(string name) =>
        Files.FirstOrDefault(f => f.Path == name || f.Path.EndsWith("/" + name, StringComparison.Ordinal))
        ?? throw new LsvcrException($"artifact set {Prefix} has no file '{name}'", ErrorKind.Internal);
}

/// <summary>A dataset accepted by the Runs API, stored as an artifact set in the reference layout.</summary>
public sealed record DatasetReference(string DatasetId, ArtifactSetReference Files);

/// <summary>A synthetic dataset generated for the run (the generator's main options; the rest keep their defaults).</summary>
public sealed record SyntheticDataSpec(int Users, int Videos = 0, int Seed = 42, int CommentsPerVideo = 8);
