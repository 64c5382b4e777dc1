using System.CommandLine;

namespace LSVCR.Cli.Commands;

public static class PipelineCommands
{
    public static Command Pipeline()
    {
        var command = new Command("pipeline", "Run embeddings → fine-tuning (both tasks) → evaluation → report in one process.");
        CliAction.Set(command, (_, _) => { CliAction.Error("not implemented yet"); return 1; });
        return command;
    }
}
