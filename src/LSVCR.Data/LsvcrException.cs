namespace LSVCR.Data;

/// <summary>
/// An error caused by the user's input or environment (a bad file, a missing artifact, an option out of range).
/// The CLI prints its message alone, without a stack trace, and exits non-zero; services turn it into a failed run.
/// Messages name the file / field / line at fault.
/// </summary>
public class LsvcrException : Exception
{
    public LsvcrException(string message) : base(message) { }
    public LsvcrException(string message, Exception inner) : base(message, inner) { }
}
