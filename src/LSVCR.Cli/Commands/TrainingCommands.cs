using System.CommandLine;

namespace LSVCR.Cli.Commands;

public static class TrainingCommands
{
    /// <summary>train, evaluate, experiment.</summary>
    public static IEnumerable<Command> Commands() => [];

    public static IEnumerable<Command> Bench() => [];
}
