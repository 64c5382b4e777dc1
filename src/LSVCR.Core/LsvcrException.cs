namespace LSVCR.Core;

/// <summary>What a host should do with a failed step.</summary>
public enum ErrorKind
{
    /// <summary>The input is wrong (a bad file, a missing artifact, an option out of range): retrying cannot help.</summary>
    BadInput,
    /// <summary>The environment failed for now (network, storage, broker): the same step may succeed if retried.</summary>
    Transient,
    /// <summary>A defect or an unexpected state inside LSVCR: fail the run and report it.</summary>
    Internal,
}

/// <summary>
/// An error LSVCR raises on purpose. Its <see cref="Kind"/> lets a message consumer choose between retrying and
/// failing the run; the CLI prints the message alone and exits non-zero. Messages name the file / field / line at
/// fault and never name CLI flags (a service has none): hosts add their own hints.
/// </summary>
public class LsvcrException : Exception
{
    public LsvcrException(string message, ErrorKind kind = ErrorKind.BadInput) : base(message) => Kind = kind;
    public LsvcrException(string message, Exception inner, ErrorKind kind = ErrorKind.BadInput) : base(message, inner) => Kind = kind;

    public ErrorKind Kind { get; }
}
