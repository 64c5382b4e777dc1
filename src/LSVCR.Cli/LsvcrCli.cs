using System.CommandLine;
using LSVCR.Cli.Commands;

namespace LSVCR.Cli;

/// <summary>The command tree. Each area contributes its commands and its <c>bench</c> subcommands.</summary>
public static class LsvcrCli
{
    public static RootCommand Build()
    {
        var root = new RootCommand(
            "LSVCR: joint short-video and comment recommendation. Import or synthesize data, embed item texts, " +
            "train and evaluate the SR model, and run the whole pipeline embedded in one process.");
        root.Subcommands.Add(PipelineCommands.Pipeline());
        root.Subcommands.Add(DataCommands.Data());
        root.Subcommands.Add(EmbedCommands.Embed());
        root.Subcommands.Add(ExportCommands.Export());
        foreach (var c in TrainingCommands.Commands()) root.Subcommands.Add(c);
        root.Subcommands.Add(AlignCommands.Align());
        root.Subcommands.Add(RunsCommands.Runs());

        var bench = new Command("bench", "Throughput measurements (not tests): synthetic data, embeddings, training.");
        foreach (var c in DataCommands.Bench()) bench.Subcommands.Add(c);
        foreach (var c in EmbedCommands.Bench()) bench.Subcommands.Add(c);
        foreach (var c in TrainingCommands.Bench()) bench.Subcommands.Add(c);
        foreach (var c in ModelCommands.Bench()) bench.Subcommands.Add(c);
        foreach (var c in AlignCommands.Bench()) bench.Subcommands.Add(c);
        root.Subcommands.Add(bench);
        return root;
    }
}
