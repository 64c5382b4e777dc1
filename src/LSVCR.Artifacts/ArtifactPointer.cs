using System.Text.Json;
using System.Text.Json.Serialization;

namespace LSVCR.Artifacts;

/// <summary>
/// A named, overwritable pointer at one artifact set (<c>_pointers/{name}.json</c> in the store): which set is current,
/// with small string facts about it (e.g. the model version of a serving bundle). Written whole in one request (a blob
/// PUT, a local rename), so a reader sees the old or the new pointer, never a mix.
/// </summary>
public sealed record ArtifactPointer
{
    public const string CurrentFormat = "lsvcr.artifact-pointer/1";

    [JsonPropertyName("format")] public string Format { get; init; } = CurrentFormat;
    [JsonPropertyName("name")] public required string Name { get; init; }
    [JsonPropertyName("target")] public required ArtifactSetReference Target { get; init; }
    [JsonPropertyName("metadata")] public IReadOnlyDictionary<string, string> Metadata { get; init; } = new SortedDictionary<string, string>(StringComparer.Ordinal);
    [JsonPropertyName("updated_utc")] public DateTimeOffset UpdatedUtc { get; init; }

    internal static string StorePath(string name) => $"{ArtifactPaths.PointersFolder}/{ArtifactPaths.CheckSet(name)}.json";

    internal byte[] ToJsonBytes() => JsonSerializer.SerializeToUtf8Bytes(this, ArtifactManifest.Json);

    internal static ArtifactPointer Parse(ReadOnlySpan<byte> json, string where)
    {
        ArtifactPointer? pointer;
        try { pointer = JsonSerializer.Deserialize<ArtifactPointer>(json, ArtifactManifest.Json); }
        catch (JsonException e) { throw new ArtifactCorruptException($"{where}: unreadable pointer ({e.Message})", e); }
        if (pointer is null) throw new ArtifactCorruptException($"{where}: empty pointer");
        if (pointer.Format != CurrentFormat) throw new ArtifactCorruptException($"{where}: pointer format '{pointer.Format}' is not '{CurrentFormat}'");
        if (pointer.Target is not { Store.Length: > 0, Set.Length: > 0, ContentSha256.Length: > 0 })
            throw new ArtifactCorruptException($"{where}: the pointer has no target (store, set, content_sha256)");
        return pointer;
    }
}
