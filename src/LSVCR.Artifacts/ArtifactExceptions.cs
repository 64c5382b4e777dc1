namespace LSVCR.Artifacts;

/// <summary>The set (or file) is not visible: never published, deleted, or its writer did not finish.</summary>
public sealed class ArtifactNotFoundException(string message) : LsvcrException(message, ErrorKind.BadInput);

/// <summary>What was read does not match its manifest (hash or size), or the manifest itself is unreadable.</summary>
public sealed class ArtifactCorruptException : LsvcrException
{
    public ArtifactCorruptException(string message) : base(message, ErrorKind.BadInput) { }
    public ArtifactCorruptException(string message, Exception inner) : base(message, inner, ErrorKind.BadInput) { }
}

/// <summary>
/// A set id already holds different content: sets are immutable and the first publish wins. <see cref="Existing"/> is
/// the set that won, so a caller that only needs "some result of this step" (a duplicated delivery) can adopt it.
/// </summary>
public sealed class ArtifactSetConflictException(string message, ArtifactSetReference existing)
    : LsvcrException(message, ErrorKind.Internal)
{
    public ArtifactSetReference Existing { get; } = existing;
}
