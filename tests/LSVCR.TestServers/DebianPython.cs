using System.ComponentModel;
using System.Diagnostics;

namespace LSVCR.TestServers;

/// <summary>
/// Debian's <c>/usr/bin/python3</c> with <c>python3-numpy</c>, which the tests use to cross-check files with Python's own
/// readers (pickle, <c>numpy.load</c>). The pyenv <c>python3</c> on PATH has no numpy, so the path is fixed. A missing
/// interpreter or a missing numpy is a failure with the install command, never a skipped assertion.
/// </summary>
public static class DebianPython
{
    public const string Interpreter = "/usr/bin/python3";
    public const string Missing = "python3-numpy is required (apt-get install python3-numpy)";

    /// <summary>Runs <paramref name="script"/> and returns its trimmed standard output; throws when numpy cannot be
    /// imported or the script fails.</summary>
    public static string Run(string script) => Run(Interpreter, [], script);

    /// <summary><see cref="Run(string)"/> with another interpreter or interpreter flags (the helper's own tests use
    /// <c>-S</c>, which hides the dist-packages folder numpy lives in).</summary>
    public static string Run(string interpreter, IReadOnlyList<string> flags, string script)
    {
        var (exit, _, error) = Start(interpreter, flags, "import numpy");
        var command = string.Join(' ', [interpreter, .. flags]);
        if (exit != 0) throw new InvalidOperationException($"{Missing}: {command} cannot import numpy ({Last(error)})");
        (exit, var output, error) = Start(interpreter, flags, script);
        if (exit != 0) throw new InvalidOperationException($"{command} failed on the test's script: {error}");
        return output.Trim();
    }

    private static (int Exit, string Output, string Error) Start(string interpreter, IReadOnlyList<string> flags, string script)
    {
        var psi = new ProcessStartInfo(interpreter) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var flag in flags) psi.ArgumentList.Add(flag);
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add(script);
        Process process;
        try { process = Process.Start(psi)!; }
        catch (Win32Exception e) { return (-1, "", $"not found: {e.Message}"); }
        using (process)
        {
            var error = process.StandardError.ReadToEndAsync();
            var output = process.StandardOutput.ReadToEnd();
            process.WaitForExit();
            return (process.ExitCode, output, error.Result);
        }
    }

    private static string Last(string error) =>
        error.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).LastOrDefault() ?? "no output";
}
