using System.CommandLine;
using LSVCR.Data;
using Spectre.Console;

namespace LSVCR.Cli;

/// <summary>
/// Wraps a command body so that user errors (<see cref="LsvcrException"/>, missing files, bad arguments) print
/// one clear line and exit with code 1, Ctrl+C exits with 130, and only genuine bugs show a stack trace (exit 70).
/// </summary>
public static class CliAction
{
    // Over the current Console.Error (not the one at first use), so a host that redirects it — tests — gets the errors.
    private static IAnsiConsole Stderr => AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });

    public static void Set(Command command, Func<ParseResult, CancellationToken, Task<int>> body) =>
        command.SetAction(async (parse, ct) =>
        {
            try
            {
                return await body(parse, ct);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                Error("cancelled");
                return 130;
            }
            catch (Exception e) when (e is LsvcrException or FileNotFoundException or DirectoryNotFoundException
                                          or UnauthorizedAccessException or ArgumentException)
            {
                Error(e.Message);
                return 1;
            }
            catch (Exception e)
            {
                Error($"internal error: {e}");
                return 70;
            }
        });

    public static void Set(Command command, Func<ParseResult, CancellationToken, int> body) =>
        Set(command, (p, ct) => Task.FromResult(body(p, ct)));

    public static void Error(string message) => Stderr.MarkupLineInterpolated($"[red]error:[/] {message}");
}
