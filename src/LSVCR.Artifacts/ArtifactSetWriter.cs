namespace LSVCR.Artifacts;

/// <summary>One publish attempt: files go to a folder of their own (<c>_files/{upload id}</c>) that no other attempt
/// writes, so a killed or concurrent writer can never mix its bytes into a visible set.</summary>
internal sealed class ArtifactSetWriter(ArtifactStore store, string set, string kind) : IArtifactSetWriter
{
    private readonly Dictionary<string, ArtifactFileEntry> files = new(StringComparer.Ordinal);
    // Sortable by time (to spot stale uploads), unique by the GUID.
    private readonly string dataPrefix = $"{ArtifactPaths.FilesFolder}/{DateTime.UtcNow:yyyyMMddTHHmmss}-{Guid.NewGuid():N}";
    private bool committed, uploaded;

    public string Set => set;
    public string Kind => kind;

    public async Task<ArtifactFileEntry> AddFileAsync(string path, Stream content, CancellationToken ct = default)
    {
        if (committed) throw new InvalidOperationException($"artifact set '{set}' is already committed");
        ArtifactPaths.CheckFile(path);
        if (files.ContainsKey(path)) throw new LsvcrException($"artifact set '{set}': file '{path}' added twice");
        uploaded = true;
        var (sha, size) = await store.UploadAsync($"{set}/{dataPrefix}/{path}", content, ct);
        var entry = new ArtifactFileEntry(path, sha, size);
        files.Add(path, entry);
        return entry;
    }

    public async Task<ArtifactFileEntry> AddLocalFileAsync(string path, string localFile, CancellationToken ct = default)
    {
        if (!File.Exists(localFile)) throw new LsvcrException($"{localFile}: file to publish as '{set}/{path}' not found");
        await using var stream = new FileStream(localFile, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, FileOptions.Asynchronous | FileOptions.SequentialScan);
        return await AddFileAsync(path, stream, ct);
    }

    public async Task<ArtifactSetReference> CommitAsync(IReadOnlyDictionary<string, string>? metadata = null, CancellationToken ct = default)
    {
        if (committed) throw new InvalidOperationException($"artifact set '{set}' is already committed");
        var meta = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (var (k, v) in metadata ?? new Dictionary<string, string>()) meta[k] = v;
        var list = files.Values.OrderBy(f => f.Path, StringComparer.Ordinal).ToList();
        var manifest = new ArtifactManifest
        {
            Set = set, Kind = kind, DataPrefix = dataPrefix, CreatedUtc = DateTimeOffset.UtcNow, Metadata = meta, Files = list,
            ContentSha256 = ArtifactManifest.ComputeContentHash(kind, meta, list),
        };
        ct.ThrowIfCancellationRequested();
        // The one step that makes the set visible; create-if-absent, so the first publish of an id wins.
        if (await store.TryCreateAsync($"{set}/{ArtifactPaths.ManifestFile}", manifest.ToJsonBytes(), CancellationToken.None))
        {
            committed = true;
            return manifest.ToReference(store.Name);
        }
        var existing = await store.TryGetManifestAsync(set, CancellationToken.None)
                       ?? throw new LsvcrException($"{store.Name}:{set}: the manifest exists but could not be read back", ErrorKind.Transient);
        await DisposeAsync();  // ours is not needed either way
        committed = true;
        if (existing.ContentSha256 == manifest.ContentSha256) return existing.ToReference(store.Name);
        throw new ArtifactSetConflictException(
            $"{store.Name}:{set}: the set already holds other content ({existing.ContentSha256[..12]}…, published {existing.CreatedUtc:u}); " +
            $"sets are immutable: publish under a new id (e.g. one that includes the step key) or delete the old set first",
            existing.ToReference(store.Name));
    }

    /// <summary>An uncommitted attempt removes what it uploaded (best effort: a killed writer leaves an invisible folder).</summary>
    public async ValueTask DisposeAsync()
    {
        if (committed || !uploaded) return;
        uploaded = false;
        try { await store.DeletePrefixAsync($"{set}/{dataPrefix}/", CancellationToken.None); }
        catch (Exception e) when (e is IOException or LsvcrException or UnauthorizedAccessException) { }
    }
}
