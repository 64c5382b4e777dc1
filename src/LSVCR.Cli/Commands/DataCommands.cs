using System.CommandLine;

namespace LSVCR.Cli.Commands;

public static class DataCommands
{
    public static Command Data()
    {
        var command = new Command("data", "Import, validate, synthesize and describe datasets in the reference layout.");
        return command;
    }

    public static IEnumerable<Command> Bench() => [];
}
