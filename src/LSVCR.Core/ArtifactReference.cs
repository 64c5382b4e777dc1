namespace LSVCR.Core;

/// <summary>
/// Where one published file lives: the store it is in (e.g. <c>local</c>, <c>azure-blob</c>), its path inside the
/// store, and its content hash and size, so a reader can verify what it got. Messages carry these, never bytes.
/// </summary>
public sealed record ArtifactReference(string Store, string Path, string Sha256, long Size);
