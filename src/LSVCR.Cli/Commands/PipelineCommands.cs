using System.CommandLine;
using LSVCR.Data;
using LSVCR.Embeddings;
using LSVCR.Pipeline;
using LSVCR.Training;
using Spectre.Console;

namespace LSVCR.Cli.Commands;

public static class PipelineCommands
{
    public static Command Pipeline()
    {
        var defaults = new PipelineOptions { OutDir = "out" };
        var data = new Option<string?>("--data") { Description = "Dataset in the reference layout. Omitted: a synthetic dataset is generated into OUT/data (reused on reruns)." };
        var output = new Option<string>("--out") { Description = "Folder for every artifact of the run: data/, embeddings/, experiment/ (report.md, report.json, checkpoints).", DefaultValueFactory = _ => "out" };
        var users = new Option<int>("--users") { Description = "Synthetic dataset only: number of users.", DefaultValueFactory = _ => defaults.Synth.Users };
        var videos = new Option<int>("--videos") { Description = "Synthetic dataset only: number of videos (0 = scale with users).", DefaultValueFactory = _ => defaults.Synth.Videos };
        var seed = new Option<int>("--seed") { Description = "Seed for the synthetic data, training and evaluation sampling (a settings file's \"seed\" seeds training alone).", DefaultValueFactory = _ => defaults.Synth.Seed };
        var encoder = new Option<string>("--encoder") { Description = "Text encoder for item embeddings (see `lsvcr embed --help`).", DefaultValueFactory = _ => defaults.Embed.Encoder };
        // Training settings as for `lsvcr train`, per task and variant; --seed is the pipeline's own (it seeds the data too)
        // and the init checkpoint is the alignment stage's output.
        var settings = TrainingSettingsOptions.Create(defaults.Training, "seed", "init");
        var variants = new Option<string[]>("--variants")
        {
            Description = $"Variants to train and evaluate (any case): {string.Join(", ", ExperimentOptions.AllVariants)}.",
            AllowMultipleArgumentsPerToken = true,
            DefaultValueFactory = _ => [.. defaults.Variants],
        };
        var noAlign = new Option<bool>("--no-align") { Description = "Skip stage 1 (alignment): stage 2 starts from fresh weights on the plain embeddings, and the report has no no-alignment row." };
        var alignExamples = new Option<int>("--align-examples") { Description = "Stage-1 examples (a bounded CPU sample; `lsvcr align` runs the full stage).", DefaultValueFactory = _ => Alignment.PipelineAlignmentStage.PipelineDefaults.Examples!.Value };
        var tasks = new Option<string[]>("--tasks") { Description = "Tasks: rec, commrank.", AllowMultipleArgumentsPerToken = true, DefaultValueFactory = _ => ["rec", "commrank"] };
        var command = new Command("pipeline",
            "Run the whole pipeline in one process: [synthetic data] → embeddings → stage-1 alignment (bounded sample; --no-align skips it) → fine-tuning " +
            "(both tasks, every variant) → evaluation → report. Every step reuses or resumes what an earlier run left in --out.")
        {
            data, output, users, videos, seed, encoder, variants, tasks, noAlign, alignExamples,
        };
        settings.AddTo(command);
        CliAction.Set(command, async (parse, ct) =>
        {
            var seedValue = parse.GetValue(seed);
            var seedGiven = parse.GetResult(seed) is { Implicit: false };
            var training = settings.Read(parse, defaults.Training with { Seed = seedValue },
                seedGiven ? new System.Text.Json.Nodes.JsonObject { ["seed"] = seedValue } : null);
            // Printed resolved, passed on as given: an alignment stage's checkpoint may still supply the model shape.
            TrainingCommands.Effective(training);
            var options = defaults with
            {
                OutDir = parse.GetValue(output)!,
                DataDir = parse.GetValue(data),
                Synth = defaults.Synth with { Users = parse.GetValue(users), Videos = parse.GetValue(videos), Seed = seedValue },
                Embed = defaults.Embed with { Encoder = parse.GetValue(encoder)! },
                Variants = Variants.ParseList(parse.GetValue(variants)!),
                Tasks = [.. ParseList(parse.GetValue(tasks)!, "--tasks", ["rec", "commrank"]).Select(ParseTask)],
                Training = training,
                Evaluation = defaults.Evaluation with { Seed = seedValue, CpuKernels = training.CpuKernels },
                Alignment = parse.GetValue(noAlign) ? null : new Alignment.PipelineAlignmentStage(
                    Alignment.PipelineAlignmentStage.PipelineDefaults with { Examples = parse.GetValue(alignExamples), Seed = seedValue }),
            };
            HostOptions.Apply(options.Training.Threads);
            var result = await CliProgress.RunAsync(p => Task.Run(() => EmbeddedPipeline.RunAsync(options, p, ct), ct));
            foreach (var line in result.Log) AnsiConsole.MarkupLineInterpolated($"[grey]•[/] {line}");
            AnsiConsole.WriteLine();
            Console.WriteLine(result.Report.ToMarkdown());
            return 0;
        });
        return command;
    }

    /// <summary>Accepts both "a,b" and "a b"; rejects names outside <paramref name="allowed"/> with the option's name.</summary>
    internal static IReadOnlyList<string> ParseList(string[] values, string option, IReadOnlyList<string> allowed)
    {
        var items = values.SelectMany(v => v.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            .Distinct(StringComparer.OrdinalIgnoreCase).ToList();
        if (items.Count == 0) throw new ArgumentException($"{option}: give at least one of {string.Join(", ", allowed)}");
        foreach (var item in items)
            if (!allowed.Contains(item, StringComparer.OrdinalIgnoreCase))
                throw new ArgumentException($"{option}: unknown value '{item}' (expected one of {string.Join(", ", allowed)})");
        return items;
    }

    internal static TaskKind ParseTask(string name) => name.ToLowerInvariant() switch
    {
        "rec" => TaskKind.Rec,
        "commrank" or "comm_rank" or "comm-rank" => TaskKind.CommRank,
        _ => throw new ArgumentException($"--tasks: unknown task '{name}' (expected rec or commrank)"),
    };
}
