using System.CommandLine;

namespace LSVCR.Cli.Commands;

public static class EmbedCommands
{
    public static Command Embed()
    {
        var command = new Command("embed", "Encode every video title and comment text into photo_embs.npy / comment_embs.npy.");
        return command;
    }

    public static IEnumerable<Command> Bench() => [];
}
