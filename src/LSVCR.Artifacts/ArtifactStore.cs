namespace LSVCR.Artifacts;

/// <summary>
/// What both stores share: the set layout (<c>{set}/_files/{upload id}/{path}</c> for files, <c>{set}/_manifest.json</c>
/// written last with create-if-absent), the publish protocol, idempotency and conflict rules, and verification.
/// A store supplies five primitives on store paths.
/// </summary>
public abstract class ArtifactStore : IArtifactStore
{
    public abstract string Name { get; }

    /// <summary>Streams <paramref name="content"/> to <paramref name="storePath"/>, hashing it; an exception must leave no
    /// readable object that could be mistaken for the whole file (it is never listed by a manifest anyway).</summary>
    protected internal abstract Task<(string Sha256, long Size)> UploadAsync(string storePath, Stream content, CancellationToken ct);

    /// <summary>Creates a small object atomically if nothing exists at the path; false when something does.</summary>
    protected internal abstract Task<bool> TryCreateAsync(string storePath, byte[] content, CancellationToken ct);

    /// <summary>Writes a small object whole, replacing any existing one atomically (readers see the old or the new bytes).</summary>
    protected internal abstract Task PutAsync(string storePath, byte[] content, CancellationToken ct);

    /// <summary>Reads a small object whole (manifests), or null when it does not exist.</summary>
    protected internal abstract Task<byte[]?> TryReadAllAsync(string storePath, CancellationToken ct);

    protected internal abstract Task DeleteObjectAsync(string storePath, CancellationToken ct);

    /// <summary>Deletes every object whose path starts with <paramref name="prefix"/> (which ends with '/').</summary>
    protected internal abstract Task DeletePrefixAsync(string prefix, CancellationToken ct);

    /// <summary>Makes the files of a verified manifest available locally and returns their folder.</summary>
    protected abstract Task<string> MaterializeAsync(ArtifactManifest manifest, CancellationToken ct);

    public abstract Task<string> GetFileAsync(ArtifactReference file, CancellationToken ct = default);

    protected static string ManifestPath(string set) => $"{set}/{ArtifactPaths.ManifestFile}";

    public IArtifactSetWriter CreateSet(string set, string kind)
    {
        ArtifactPaths.CheckSet(set);
        if (string.IsNullOrWhiteSpace(kind)) throw new LsvcrException($"artifact set '{set}': kind is empty");
        return new ArtifactSetWriter(this, set, kind);
    }

    public async Task<ArtifactSetReference> PublishDirectoryAsync(string set, string kind, string directory,
        IReadOnlyDictionary<string, string>? metadata = null, CancellationToken ct = default)
    {
        if (!Directory.Exists(directory)) throw new LsvcrException($"{directory}: folder to publish as '{set}' not found");
        await using var writer = CreateSet(set, kind);
        var root = Path.GetFullPath(directory);
        foreach (var file in Directory.EnumerateFiles(root, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
        {
            var relative = Path.GetRelativePath(root, file).Replace(Path.DirectorySeparatorChar, '/');
            await writer.AddLocalFileAsync(relative, file, ct);
        }
        return await writer.CommitAsync(metadata, ct);
    }

    public async Task<ArtifactManifest?> TryGetManifestAsync(string set, CancellationToken ct = default)
    {
        ArtifactPaths.CheckSet(set);
        var bytes = await TryReadAllAsync(ManifestPath(set), ct);
        if (bytes is null) return null;
        var manifest = ArtifactManifest.Parse(bytes, $"{Name}:{ManifestPath(set)}");
        if (manifest.Set != set)
            throw new ArtifactCorruptException($"{Name}:{ManifestPath(set)}: the manifest names set '{manifest.Set}'");
        return manifest;
    }

    public virtual async Task<ArtifactManifest> GetManifestAsync(ArtifactSetReference reference, CancellationToken ct = default)
    {
        var manifest = await TryGetManifestAsync(reference.Set, ct) ?? throw NotFound(reference.Set);
        if (manifest.ContentSha256 != reference.ContentSha256)
            throw new ArtifactNotFoundException(
                $"{Name}:{reference.Set}: the set now holds content {manifest.ContentSha256[..12]}…, not the {reference.ContentSha256[..12]}… " +
                "this reference names (it was deleted and published again)");
        return manifest;
    }

    public virtual async Task<LocalArtifactSet> OpenAsync(ArtifactSetReference reference, CancellationToken ct = default)
    {
        CheckStore(reference.Store);
        var manifest = await GetManifestAsync(reference, ct);
        return new LocalArtifactSet(manifest.ToReference(Name), manifest, await MaterializeAsync(manifest, ct));
    }

    public async Task<LocalArtifactSet> OpenAsync(string set, CancellationToken ct = default)
    {
        var manifest = await TryGetManifestAsync(set, ct) ?? throw NotFound(set);
        Remember(manifest);
        return new LocalArtifactSet(manifest.ToReference(Name), manifest, await MaterializeAsync(manifest, ct));
    }

    public async Task<ArtifactPointer> SetPointerAsync(string name, ArtifactSetReference target, IReadOnlyDictionary<string, string>? metadata = null,
        CancellationToken ct = default)
    {
        CheckStore(target.Store);
        var path = ArtifactPointer.StorePath(name);
        // Only a visible set with this content may be pointed at (GetManifestAsync throws otherwise).
        await GetManifestAsync(target, ct);
        var meta = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (var (k, v) in metadata ?? new Dictionary<string, string>()) meta[k] = v;
        var pointer = new ArtifactPointer { Name = name, Target = target, Metadata = meta, UpdatedUtc = DateTimeOffset.UtcNow };
        await PutAsync(path, pointer.ToJsonBytes(), ct);
        return pointer;
    }

    public async Task<ArtifactPointer?> TryGetPointerAsync(string name, CancellationToken ct = default)
    {
        var path = ArtifactPointer.StorePath(name);
        var bytes = await TryReadAllAsync(path, ct);
        if (bytes is null) return null;
        var pointer = ArtifactPointer.Parse(bytes, $"{Name}:{path}");
        if (pointer.Name != name) throw new ArtifactCorruptException($"{Name}:{path}: the pointer names itself '{pointer.Name}'");
        return pointer;
    }

    /// <summary>Called with a manifest just read from the store (a cache may keep it: sets are immutable).</summary>
    protected virtual void Remember(ArtifactManifest manifest) { }

    public async Task DeleteAsync(string set, CancellationToken ct = default)
    {
        ArtifactPaths.CheckSet(set);
        await DeleteObjectAsync(ManifestPath(set), ct);
        await DeletePrefixAsync($"{set}/{ArtifactPaths.FilesFolder}/", ct);
    }

    protected void CheckStore(string store)
    {
        if (store != Name)
            throw new LsvcrException($"artifact reference names store '{store}', but this store is '{Name}'");
    }

    protected ArtifactNotFoundException NotFound(string set) =>
        new($"{Name}:{set}: artifact set not found (no {ArtifactPaths.ManifestFile}: never published, deleted, or its writer did not finish)");

    protected static string Where(string store, ArtifactManifest manifest, ArtifactFileEntry file) =>
        $"{store}:{manifest.Set}/{file.Path}";
}
