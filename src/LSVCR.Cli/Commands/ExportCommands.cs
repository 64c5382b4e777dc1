using System.CommandLine;
using LSVCR.Serving.Export;
using Spectre.Console;

namespace LSVCR.Cli.Commands;

public static class ExportCommands
{
    public static Command Export()
    {
        var rec = new Option<string>("--rec") { Description = "Rec run folder (or its best/ checkpoint), e.g. out/experiment/rec/full.", Required = true };
        var commRank = new Option<string>("--commrank") { Description = "CommRank run folder (or its best/ checkpoint), e.g. out/experiment/commrank/full.", Required = true };
        var data = new Option<string>("--data") { Description = "Dataset folder (reference layout) the models were trained on.", Required = true };
        var embeddings = new Option<string>("--embeddings") { Description = "Embeddings folder (photo_embs.npy, comment_embs.npy).", Required = true };
        var output = new Option<string>("--out") { Description = "Bundle folder to write (replaced when it exists).", Required = true };
        var run = new Option<string?>("--run") { Description = "Name of the training run recorded in the manifest (default: the folder holding the runs)." };
        var command = new Command("export", "Write the serving bundle: ONNX user encoders, candidate vectors, id maps, comment lists, popularity, manifest.")
        {
            rec, commRank, data, embeddings, output, run,
        };
        CliAction.Set(command, async (parse, ct) =>
        {
            var options = new ExportOptions
            {
                Rec = parse.GetValue(rec)!, CommRank = parse.GetValue(commRank)!, Data = parse.GetValue(data)!,
                Embeddings = parse.GetValue(embeddings)!, Out = parse.GetValue(output)!, TrainingRun = parse.GetValue(run),
            };
            var m = await CliProgress.RunAsync(p => Task.Run(() => BundleExporter.Export(options, p), ct));
            AnsiConsole.MarkupLineInterpolated($"[green]bundle {m.ModelVersion}[/] → {options.Out} ({m.Videos:N0} videos, {m.Comments:N0} comments, {m.Files.Sum(f => f.Bytes) / 1e6:F1} MB)");
            return 0;
        });
        return command;
    }
}
