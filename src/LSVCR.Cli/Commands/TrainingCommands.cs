using System.CommandLine;
using System.Globalization;
using LSVCR.Data;
using LSVCR.Training;
using Spectre.Console;

namespace LSVCR.Cli.Commands;

public static class TrainingCommands
{
    /// <summary>train, evaluate, experiment.</summary>
    public static IEnumerable<Command> Commands() => [Train(), Evaluate(), Experiment()];

    public static IEnumerable<Command> Bench() => [BenchTrain()];

    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>Resolves the settings (init checkpoint shape, defaults spelled out; errors before any data is read) and
    /// prints them, so the log of every run starts with what it ran with.</summary>
    internal static TrainOptions Effective(TrainOptions options)
    {
        var effective = TrainSettings.Resolve(options);
        Console.WriteLine($"settings: {TrainSettings.Describe(effective)}");   // one unwrapped line, for logs and greps
        return effective;
    }

    private static Option<string> DataOption() => new("--data") { Description = "Dataset folder in the reference layout.", Required = true };
    private static Option<string> EmbeddingsOption() => new("--embeddings") { Description = "Folder with photo_embs.npy and comment_embs.npy (rows = catalogue ids).", Required = true };
    private static Option<string> TaskOption() => new Option<string>("--task") { Description = "rec (next video) or commrank (comment ranking).", Required = true }.AcceptOnlyFromAmong("rec", "commrank");

    private static async Task<(LsvcrDataset Data, FloatMatrix Photos, FloatMatrix Comments)> LoadAsync(string dataDir, string embDir) =>
        await CliProgress.RunAsync(p => Task.Run(() =>
        {
            var data = ReferenceLayout.Read(dataDir, p);
            var (photos, comments) = TextEmbeddings.Load(embDir, data.Catalog);
            return (data, photos, comments);
        }));

    private static Command Train()
    {
        var task = TaskOption();
        var data = DataOption();
        var embeddings = EmbeddingsOption();
        var output = new Option<string>("--out") { Description = "Run folder: best/ (best validation checkpoint), last/ (resume state), history.json. Rerunning the same command resumes.", Required = true };
        var variant = new Option<string>("--variant")
        {
            Description = $"Model variant (any case): {string.Join(", ", Variants.All.Where(Variants.IsTrained))}.", DefaultValueFactory = _ => Variants.Full,
        };
        var opts = TrainingSettingsOptions.Create(new TrainOptions());
        var command = new Command("train", "Stage-2 fine-tuning of the SR model on one task: AdamW, per-epoch validation ndcg@5, early stopping, best and resumable last checkpoints.")
        {
            task, data, embeddings, output, variant,
        };
        opts.AddTo(command);
        CliAction.Set(command, async (parse, ct) =>
        {
            var variantName = TrainedVariant(parse.GetValue(variant)!);
            var options = Effective(opts.Read(parse, new TrainOptions()));
            var (dataset, photos, comments) = await LoadAsync(parse.GetValue(data)!, parse.GetValue(embeddings)!);
            HostOptions.Apply(options.Threads);
            var outDir = parse.GetValue(output)!;
            var result = await CliProgress.RunAsync(p => FineTuner.RunAsync(dataset, photos, comments, Protocols.ParseTask(parse.GetValue(task)!),
                variantName, outDir, options, progress: p, ct: ct));
            var table = new Table().AddColumns("epoch", "loss", "val ndcg@5", "val ndcg@10", "samples/s", "");
            foreach (var e in result.History)
                table.AddRow(e.Epoch.ToString(Inv), e.Loss.ToString("F4", Inv), e.Validation.GetValueOrDefault("ndcg@5").ToString("F4", Inv),
                    e.Validation.GetValueOrDefault("ndcg@10").ToString("F4", Inv), e.SamplesPerSecond.ToString("F0", Inv), e.Best ? "best" : "");
            AnsiConsole.Write(table);
            if (result.ResumedAfterEpoch > 0) AnsiConsole.MarkupLineInterpolated($"resumed after epoch {result.ResumedAfterEpoch}");
            AnsiConsole.MarkupLineInterpolated(
                $"[green]done[/]: {result.EpochsRun} epochs{(result.StoppedEarly ? " (early stop)" : "")}, best epoch {result.BestEpoch} (val ndcg@5 {result.BestValNdcg5:F4}) → {result.BestDir}");
            return 0;
        });
        return command;
    }

    private static Command Evaluate()
    {
        var model = new Option<string>("--model") { Description = "Model folder (a train --out folder or its best/ / last/).", Required = true };
        var data = DataOption();
        var embeddings = EmbeddingsOption();
        var split = new Option<string>("--split") { Description = "Split to evaluate.", DefaultValueFactory = _ => "test" }.AcceptOnlyFromAmong("train", "val", "test");
        var protocol = new Option<string?>("--protocol") { Description = "Rec: sampled (target + 99 random videos, default) or full (all videos). CommRank always ranks the watched video's comments." };
        var ks = new Option<string>("--k") { Description = "Cut-offs, comma-separated (1, 5 and 10 are always included).", DefaultValueFactory = _ => "1,5,10,20" };
        var seed = new Option<int>("--seed") { Description = "Seed of the candidate sampling.", DefaultValueFactory = _ => new EvalOptions().Seed };
        var json = new Option<bool>("--json") { Description = "Print {task, split, protocol, examples, metrics} as JSON." };
        var noCpuKernels = HostOptions.NoCpuKernels();
        var command = new Command("evaluate", "Evaluate a fine-tuned model with the MODEL.md §5 protocols: hit, recall, ndcg and mrr at each k.")
        {
            model, data, embeddings, split, protocol, ks, seed, json, noCpuKernels,
        };
        CliAction.Set(command, async (parse, ct) =>
        {
            var kList = ParseKs(parse.GetValue(ks)!);
            var (dataset, photos, comments) = await LoadAsync(parse.GetValue(data)!, parse.GetValue(embeddings)!);
            var splitValue = Enum.Parse<Split>(parse.GetValue(split)!, ignoreCase: true);
            var options = new EvalOptions { Ks = kList, Seed = parse.GetValue(seed), CpuKernels = !parse.GetValue(noCpuKernels) };
            HostOptions.Apply(threads: null);
            // The model is rebuilt with the settings stored in its config.json (shape, dropout, temperature, max position).
            var (result, info) = await CliProgress.RunAsync(p => Task.Factory.StartNew(() =>
            {
                var (m, info) = ModelStore.Load(parse.GetValue(model)!, photos, comments, options.CpuKernels);
                using (m)
                    return (Evaluator.Evaluate(new ModelScorer(m), dataset, Protocols.ParseTask(info.Task), splitValue, parse.GetValue(protocol),
                        options, Variants.DropsComments(info.Variant), info.Config.MaxPosition, p, ct), info);
            }, ct, TaskCreationOptions.LongRunning, TaskScheduler.Default));
            if (parse.GetValue(json))
            {
                Console.WriteLine(result.ToJson());
                return 0;
            }
            var c = info.Config;
            AnsiConsole.MarkupLineInterpolated($"[grey]model:[/] {info.Task} {info.Variant}, epoch {info.Epoch}; hidden {c.Hidden}, heads {c.Heads}, layers {c.EncoderLayers}, mix-layers {c.MixLayers}, inner {c.Inner}, max-position {c.MaxPosition} (from its config.json)");
            AnsiConsole.MarkupLineInterpolated($"{result.Task} / {result.Split} / {result.Protocol}: {result.Examples} examples");
            var table = new Table().AddColumns("k", "hit", "recall", "ndcg", "mrr");
            foreach (var k in options.AllKs)
                table.AddRow(k.ToString(Inv), M(result, "hit", k), M(result, "recall", k), M(result, "ndcg", k), M(result, "mrr", k));
            AnsiConsole.Write(table);
            return 0;
        });
        return command;
    }

    private static Command Experiment()
    {
        var data = DataOption();
        var embeddings = EmbeddingsOption();
        var output = new Option<string>("--out") { Description = "Experiment folder: one run folder per task/variant, report.md, report.json. Reruns skip finished runs.", Required = true };
        var variants = new Option<string>("--variants") { Description = "Comma-separated variants (any case).", DefaultValueFactory = _ => string.Join(",", ExperimentOptions.AllVariants) };
        var tasks = new Option<string>("--tasks") { Description = "Comma-separated tasks.", DefaultValueFactory = _ => "rec,commrank" };
        var opts = TrainingSettingsOptions.Create(new TrainOptions());
        var command = new Command("experiment", "Train and evaluate every variant (full, id-only, text-only, no-comments, popularity) on both tasks and write report.md / report.json.")
        {
            data, embeddings, output, variants, tasks,
        };
        opts.AddTo(command);
        CliAction.Set(command, async (parse, ct) =>
        {
            var options = new ExperimentOptions
            {
                OutDir = parse.GetValue(output)!,
                Variants = Variants.ParseList([parse.GetValue(variants)!]),
                Tasks = [.. Split(parse.GetValue(tasks)!).Select(Protocols.ParseTask)],
                Training = Effective(opts.Read(parse, new TrainOptions())),
            };
            options = options with { Evaluation = options.Evaluation with { CpuKernels = options.Training.CpuKernels } };
            HostOptions.Apply(options.Training.Threads);
            var (dataset, photos, comments) = await LoadAsync(parse.GetValue(data)!, parse.GetValue(embeddings)!);
            var report = await CliProgress.RunAsync(p => ExperimentRunner.RunAsync(dataset, photos, comments, options, p, ct));
            foreach (var group in report.Rows.GroupBy(r => (r.Task, r.Protocol)))
            {
                var table = new Table { Title = new TableTitle($"{group.Key.Task} — {group.Key.Protocol}") }
                    .AddColumns(["variant", .. ExperimentReport.Columns]);
                foreach (var row in group)
                    table.AddRow([row.Variant, .. ExperimentReport.Columns.Select(c => row.Result.Metrics.GetValueOrDefault(c).ToString("F4", Inv))]);
                AnsiConsole.Write(table);
            }
            AnsiConsole.MarkupLineInterpolated($"[green]wrote[/] {Path.Combine(options.OutDir, ExperimentRunner.ReportMarkdown)} and {ExperimentRunner.ReportJson}");
            return 0;
        });
        return command;
    }

    private static Command BenchTrain()
    {
        var task = TaskOption();
        var data = DataOption();
        var embeddings = EmbeddingsOption();
        var variant = new Option<string>("--variant") { Description = "Model variant.", DefaultValueFactory = _ => Variants.Full };
        var batch = new Option<int>("--batch") { Description = "Examples per batch.", DefaultValueFactory = _ => new TrainOptions().BatchSize };
        var batches = new Option<int>("--batches") { Description = "Batches to time.", DefaultValueFactory = _ => 20 };
        var noCpuKernels = HostOptions.NoCpuKernels();
        var command = new Command("fine-tune", "Time batch assembly alone and full training steps (samples/s); shows whether data feeding keeps up with the model.")
        {
            task, data, embeddings, variant, batch, batches, noCpuKernels,
        };
        CliAction.Set(command, async (parse, ct) =>
        {
            var variantName = TrainedVariant(parse.GetValue(variant)!);
            var (dataset, photos, comments) = await LoadAsync(parse.GetValue(data)!, parse.GetValue(embeddings)!);
            var options = new TrainOptions { BatchSize = parse.GetValue(batch), CpuKernels = !parse.GetValue(noCpuKernels) };
            HostOptions.Apply(threads: null);
            var r = await CliProgress.RunAsync(p => Task.Factory.StartNew(() => TrainingBench.Measure(dataset, photos, comments,
                Protocols.ParseTask(parse.GetValue(task)!), variantName, options, parse.GetValue(batches), p, ct),
                ct, TaskCreationOptions.LongRunning, TaskScheduler.Default));
            AnsiConsole.MarkupLineInterpolated($"{r.Batches} batches of {r.BatchSize}");
            AnsiConsole.MarkupLineInterpolated($"  batch assembly alone: {r.AssemblySamplesPerSecond:N0} samples/s");
            AnsiConsole.MarkupLineInterpolated($"  training steps:       {r.TrainSamplesPerSecond:N0} samples/s ({r.SecondsPerStep * 1000:F0} ms/step)");
            AnsiConsole.MarkupLineInterpolated($"  headroom:             {r.Headroom:F1}× (assembly runs ahead on a background thread)");
            return 0;
        });
        return command;
    }

    /// <summary>train and bench fine-tune take one variant that has a model (any case, as experiment and pipeline).</summary>
    private static string TrainedVariant(string name)
    {
        var variant = Variants.Parse(name);
        return Variants.IsTrained(variant) ? variant
            : throw new LsvcrException($"variant '{variant}' has no model to train (experiment and pipeline evaluate it as a baseline)");
    }

    private static string[] Split(string csv) => csv.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    private static int[] ParseKs(string csv)
    {
        var ks = new List<int>();
        foreach (var s in Split(csv))
            ks.Add(int.TryParse(s, NumberStyles.Integer, Inv, out int k) && k >= 1 ? k : throw new LsvcrException($"--k: '{s}' is not a positive integer"));
        return [.. ks];
    }

    private static string M(EvalResult r, string kind, int k) => r.Metrics.GetValueOrDefault($"{kind}@{k}").ToString("F4", Inv);
}
