namespace LSVCR.Core;

/// <summary>
/// A published artifact set (a dataset, embeddings, a checkpoint, a report, a serving bundle): the store it is in,
/// its id inside the store (e.g. <c>runs/r1/rec</c>), and the hash of its content (every file's path, SHA-256 and size,
/// plus its kind and metadata), so a reader can tell the set it was promised from any other. Messages carry these.
/// </summary>
/// <param name="Store">Store name, e.g. <c>local</c> or <c>azure-blob</c>.</param>
/// <param name="Set">Set id inside the store: lower-case path segments separated by '/'.</param>
/// <param name="ContentSha256">SHA-256 over the manifest's content (see docs/artifacts.md), lower-case hex.</param>
/// <param name="Files">Number of files in the set.</param>
/// <param name="Size">Total bytes of the set's files.</param>
public sealed record ArtifactSetReference(string Store, string Set, string ContentSha256, int Files, long Size);
