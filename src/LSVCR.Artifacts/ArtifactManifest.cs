using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.RegularExpressions;

namespace LSVCR.Artifacts;

/// <summary>One file of an artifact set: its path inside the set ('/'-separated), SHA-256 (lower-case hex) and size.</summary>
public sealed record ArtifactFileEntry(
    [property: JsonPropertyName("path")] string Path,
    [property: JsonPropertyName("sha256")] string Sha256,
    [property: JsonPropertyName("size")] long Size);

/// <summary>
/// <c>_manifest.json</c> of an artifact set: written last, it is what makes the set visible. It lists every file with
/// its SHA-256 and size; <see cref="ContentSha256"/> hashes the kind, the metadata and that list (not the time or the
/// upload folder), so publishing the same content twice yields the same hash (docs/artifacts.md).
/// </summary>
public sealed record ArtifactManifest
{
    public const string CurrentFormat = "lsvcr.artifact-set/1";

    [JsonPropertyName("format")] public string Format { get; init; } = CurrentFormat;
    [JsonPropertyName("set")] public required string Set { get; init; }
    /// <summary>What the set is: <c>dataset</c>, <c>embeddings</c>, <c>checkpoint</c>, <c>report</c>, <c>bundle</c>…</summary>
    [JsonPropertyName("kind")] public required string Kind { get; init; }
    [JsonPropertyName("content_sha256")] public required string ContentSha256 { get; init; }
    /// <summary>Where the files are, relative to the set: <c>_files/&lt;upload id&gt;</c>.</summary>
    [JsonPropertyName("data_prefix")] public required string DataPrefix { get; init; }
    [JsonPropertyName("created_utc")] public DateTimeOffset CreatedUtc { get; init; }
    /// <summary>Small string facts about the set (a step key, an encoder, a variant); part of the content hash.</summary>
    [JsonPropertyName("metadata")] public IReadOnlyDictionary<string, string> Metadata { get; init; } = new SortedDictionary<string, string>(StringComparer.Ordinal);
    [JsonPropertyName("files")] public required IReadOnlyList<ArtifactFileEntry> Files { get; init; }

    [JsonIgnore] public long Size => Files.Sum(f => f.Size);

    public ArtifactSetReference ToReference(string store) => new(store, Set, ContentSha256, Files.Count, Size);

    /// <summary>The entry of a file; a clear error when the set has no such file.</summary>
    public ArtifactFileEntry this[string path] => Files.FirstOrDefault(f => f.Path == path)
        ?? throw new ArtifactNotFoundException($"artifact set '{Set}' has no file '{path}' (it has {string.Join(", ", Files.Select(f => f.Path))})");

    /// <summary>The store path of a file (what <see cref="ArtifactReference.Path"/> holds).</summary>
    public string StorePath(string path) => $"{Set}/{DataPrefix}/{this[path].Path}";

    public ArtifactReference FileReference(string store, string path)
    {
        var entry = this[path];
        return new ArtifactReference(store, StorePath(path), entry.Sha256, entry.Size);
    }

    /// <summary>SHA-256 over the kind, the metadata (ordinal key order) and the files (ordinal path order).</summary>
    public static string ComputeContentHash(string kind, IReadOnlyDictionary<string, string> metadata, IEnumerable<ArtifactFileEntry> files) =>
        ContentHash.Combine([
            CurrentFormat, kind,
            .. metadata.OrderBy(kv => kv.Key, StringComparer.Ordinal).SelectMany(kv => new[] { "m", kv.Key, kv.Value }),
            .. files.OrderBy(f => f.Path, StringComparer.Ordinal).SelectMany(f => new[] { "f", f.Path, f.Sha256, f.Size.ToString(System.Globalization.CultureInfo.InvariantCulture) }),
        ]);

    internal static readonly JsonSerializerOptions Json = new() { WriteIndented = true };

    internal byte[] ToJsonBytes() => JsonSerializer.SerializeToUtf8Bytes(this, Json);

    /// <summary>Parses and checks a manifest; <paramref name="where"/> names it in errors.</summary>
    internal static ArtifactManifest Parse(ReadOnlySpan<byte> json, string where)
    {
        ArtifactManifest? manifest;
        try { manifest = JsonSerializer.Deserialize<ArtifactManifest>(json, Json); }
        catch (JsonException e) { throw new ArtifactCorruptException($"{where}: unreadable manifest ({e.Message})", e); }
        if (manifest is null) throw new ArtifactCorruptException($"{where}: empty manifest");
        if (manifest.Format != CurrentFormat)
            throw new ArtifactCorruptException($"{where}: manifest format '{manifest.Format}' is not '{CurrentFormat}'");
        var expected = ComputeContentHash(manifest.Kind, manifest.Metadata, manifest.Files);
        if (expected != manifest.ContentSha256)
            throw new ArtifactCorruptException($"{where}: content_sha256 is {manifest.ContentSha256} but the listed files hash to {expected}");
        return manifest;
    }
}

/// <summary>Rules for set ids and file paths, shared by both stores so a set id means the same blob and folder.</summary>
public static partial class ArtifactPaths
{
    public const string ManifestFile = "_manifest.json", FilesFolder = "_files";
    /// <summary>Top-level folder of the pointers; no set id can start with '_', so it never meets a set.</summary>
    public const string PointersFolder = "_pointers";

    // Segments may not start with '_' or '.': those names are the store's own (manifest, upload folders, temp files).
    [GeneratedRegex(@"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
    private static partial Regex Segment();

    /// <summary>Checks a set id (<c>runs/r1/rec</c>): '/'-separated segments of letters, digits, '.', '_', '-', not starting with '.' or '_'.</summary>
    public static string CheckSet(string set)
    {
        if (string.IsNullOrEmpty(set) || set.Length > 512 || !set.Split('/').All(s => Segment().IsMatch(s) && s is not (".." or ".")))
            throw new LsvcrException($"artifact set id '{set}' is invalid: use '/'-separated segments of letters, digits, '.', '_' and '-' " +
                                     "that start with a letter or digit (e.g. runs/r1/rec)");
        return set;
    }

    /// <summary>Checks a file path inside a set (<c>best/model.safetensors</c>): the same segment rules as set ids.</summary>
    public static string CheckFile(string path)
    {
        if (string.IsNullOrEmpty(path) || path.Length > 512 || !path.Split('/').All(s => Segment().IsMatch(s) && s is not (".." or ".")))
            throw new LsvcrException($"artifact file path '{path}' is invalid: use '/'-separated segments of letters, digits, '.', '_' and '-' " +
                                     "that start with a letter or digit (e.g. best/model.safetensors)");
        return path;
    }
}
