namespace LSVCR.Artifacts;

/// <summary>
/// Reads and writes artifact sets. A set is published by uploading its files (<see cref="CreateSet"/>) and then its
/// manifest, which makes it visible; readers see a whole set or none, verify every file's SHA-256, and read through a
/// local cache keyed by content hash. Sets are immutable: publishing the same content again is a no-op, different
/// content under an existing id is an <see cref="ArtifactSetConflictException"/>.
/// </summary>
public interface IArtifactStore
{
    /// <summary><c>local</c> or <c>azure-blob</c>: the <see cref="ArtifactSetReference.Store"/> of what this store hands out.</summary>
    string Name { get; }

    /// <summary>Starts a set; files go up with <see cref="IArtifactSetWriter.AddFileAsync(string, Stream, CancellationToken)"/>,
    /// the set appears at <see cref="IArtifactSetWriter.CommitAsync"/>. Disposing an uncommitted writer removes its files.</summary>
    IArtifactSetWriter CreateSet(string set, string kind);

    /// <summary>Publishes every file under <paramref name="directory"/> (recursively, paths relative to it) as one set.</summary>
    Task<ArtifactSetReference> PublishDirectoryAsync(string set, string kind, string directory,
        IReadOnlyDictionary<string, string>? metadata = null, CancellationToken ct = default);

    /// <summary>The manifest of a visible set, or null when there is none (not published, or not finished).</summary>
    Task<ArtifactManifest?> TryGetManifestAsync(string set, CancellationToken ct = default);

    /// <summary>The manifest of the set the reference names; an error when missing or holding other content.</summary>
    Task<ArtifactManifest> GetManifestAsync(ArtifactSetReference reference, CancellationToken ct = default);

    /// <summary>Makes the set's files available locally, each verified against the manifest (downloads go to the cache;
    /// a set already cached costs no request). The folder is read-only.</summary>
    Task<LocalArtifactSet> OpenAsync(ArtifactSetReference reference, CancellationToken ct = default);

    /// <summary><see cref="OpenAsync(ArtifactSetReference, CancellationToken)"/> by set id (reads the current manifest).</summary>
    Task<LocalArtifactSet> OpenAsync(string set, CancellationToken ct = default);

    /// <summary>A local, verified copy of one file (e.g. the model of a serving bundle).</summary>
    Task<string> GetFileAsync(ArtifactReference file, CancellationToken ct = default);

    /// <summary>Points the named pointer (<c>serving/latest</c>) at a visible set, replacing what it pointed at (last
    /// writer wins). The one mutable object of a store: sets stay immutable, a pointer says which of them is current, so a
    /// reader that missed an event can still find it. The set must already be visible (manifest-last: a pointer never names
    /// a set a reader cannot open).</summary>
    Task<ArtifactPointer> SetPointerAsync(string name, ArtifactSetReference target, IReadOnlyDictionary<string, string>? metadata = null,
        CancellationToken ct = default);

    /// <summary>The pointer's current value, or null when it was never set.</summary>
    Task<ArtifactPointer?> TryGetPointerAsync(string name, CancellationToken ct = default);

    /// <summary>Removes a set: its manifest first (it stops being visible), then its files, including unfinished uploads.</summary>
    Task DeleteAsync(string set, CancellationToken ct = default);
}

/// <summary>Uploads the files of one set; nothing is visible until <see cref="CommitAsync"/> writes the manifest.</summary>
public interface IArtifactSetWriter : IAsyncDisposable
{
    string Set { get; }
    string Kind { get; }

    /// <summary>Streams one file into the set, hashing it on the way (no whole-file buffer). <paramref name="path"/> is
    /// relative to the set, '/'-separated.</summary>
    Task<ArtifactFileEntry> AddFileAsync(string path, Stream content, CancellationToken ct = default);

    /// <summary>Streams a local file into the set.</summary>
    Task<ArtifactFileEntry> AddLocalFileAsync(string path, string localFile, CancellationToken ct = default);

    /// <summary>Writes the manifest, making the set visible. Returns the existing set when it already holds the same content.</summary>
    Task<ArtifactSetReference> CommitAsync(IReadOnlyDictionary<string, string>? metadata = null, CancellationToken ct = default);
}

/// <summary>A set available on the local disk: <see cref="PathOf"/> gives each file's verified local path.</summary>
public sealed class LocalArtifactSet(ArtifactSetReference reference, ArtifactManifest manifest, string directory)
{
    public ArtifactSetReference Reference { get; } = reference;
    public ArtifactManifest Manifest { get; } = manifest;

    /// <summary>A folder holding the set's files under their paths (read-only: it may be the store or the cache).</summary>
    public string Directory { get; } = directory;

    public string PathOf(string file) => Path.Combine(Directory, Manifest[file].Path.Replace('/', Path.DirectorySeparatorChar));
}
