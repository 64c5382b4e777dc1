using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using LSVCR.Data;
using Spectre.Console;

namespace LSVCR.Cli.Commands;

public static class DataCommands
{
    public static Command Data()
    {
        var command = new Command("data", "Import, validate, synthesize and describe datasets in the reference layout.");
        command.Subcommands.Add(Validate());
        command.Subcommands.Add(ImportKuaiComt());
        command.Subcommands.Add(Synth());
        command.Subcommands.Add(Stats());
        return command;
    }

    public static IEnumerable<Command> Bench() => [BenchSynth(), BenchLoad()];

    private static Argument<string> DirArgument(string description) => new("dir") { Description = description };

    private static Command Validate()
    {
        var dir = DirArgument("Dataset folder in the reference layout (all_photos.pkl, photo.json, rec.train.json, …).");
        var strict = new Option<bool>("--strict") { Description = "Also fail (exit 1) on warnings: held-out targets the user already met in training (repeat interactions, which real logs contain)." };
        var command = new Command("validate", "Check a reference-layout dataset and list every problem as file:line: message. Repeat interactions are warnings (counted, first lines shown). Exit 0 when valid, 1 otherwise.") { dir, strict };
        CliAction.Set(command, async (parse, _) =>
        {
            var path = parse.GetValue(dir)!;
            LsvcrDataset data;
            IReadOnlyList<DatasetProblem> warnings;
            try
            {
                (data, warnings) = await CliProgress.RunAsync(p => Task.Run(() => ReferenceLayout.ReadWithWarnings(path, p)));
            }
            catch (DatasetValidationException e)
            {
                foreach (var problem in e.Problems) Console.WriteLine(problem);
                CliAction.Error($"{e.Problems.Count} problem(s) in {path}");
                return 1;
            }
            if (warnings.Count > 0)
            {
                const int shown = 10;
                foreach (var w in warnings.Take(shown)) Console.WriteLine($"warning: {w}");
                if (warnings.Count > shown) Console.WriteLine($"warning: … and {warnings.Count - shown} more");
                var counts = string.Join(", ", warnings.GroupBy(w => w.File).Select(g => $"{g.Key} {g.Count()}"));
                Console.WriteLine($"{warnings.Count} repeat interaction(s) ({counts}): held-out targets the user already met in training; real logs contain them (MODEL.md §1.1)");
                if (parse.GetValue(strict))
                {
                    CliAction.Error($"{warnings.Count} warning(s) in {path} (--strict)");
                    return 1;
                }
            }
            var sets = string.Join(", ", data.Sets.Select(s => $"{TaskNames.FileName(s.Task, s.Split)[..^5]} {s.Count}"));
            AnsiConsole.MarkupLineInterpolated($"[green]valid[/]: {data.Catalog.PhotoCount - 1} videos, {data.Catalog.CommentCount - 1} comments; examples: {sets}");
            return 0;
        });
        return command;
    }

    private static Command ImportKuaiComt()
    {
        var input = new Option<string>("--in") { Description = "Folder with the KuaiComt CSVs (user_video_inter.csv, user_comment_inter.csv, video_features.csv, comment_features.csv, user_features.csv).", Required = true };
        var output = new Option<string>("--out") { Description = "Folder to write the reference layout into (created if needed).", Required = true };
        var minInteractions = new Option<int>("--min-interactions") { Description = "Drop users with fewer kept interactions (liked videos + liked/replied comments).", DefaultValueFactory = _ => new KuaiComtOptions().MinInteractions };
        var maxHistory = new Option<int>("--max-history") { Description = "Keep only the most recent N entries of each history.", DefaultValueFactory = _ => new KuaiComtOptions().MaxHistory };
        var command = new Command("import-kuaicomt", "Convert the KuaiComt CSV release into the reference layout: time-ordered histories, examples that see only earlier interactions, last target per user = test, second-to-last = val.")
        {
            input, output, minInteractions, maxHistory,
        };
        CliAction.Set(command, async (parse, _) =>
        {
            var options = new KuaiComtOptions { MinInteractions = parse.GetValue(minInteractions), MaxHistory = parse.GetValue(maxHistory) };
            var outDir = parse.GetValue(output)!;
            var report = await CliProgress.RunAsync(p => Task.Run(() =>
            {
                var (dataset, report) = KuaiComtImporter.Import(parse.GetValue(input)!, options, p);
                ReferenceLayout.Write(dataset, outDir, p);
                return report;
            }));
            var table = new Table().AddColumns("kept", "count");
            table.AddRow("users", N(report.Users));
            table.AddRow("videos", N(report.Videos));
            table.AddRow("comments", N(report.Comments));
            table.AddRow("liked videos", N(report.LikedVideos));
            table.AddRow("comment interactions", N(report.CommentInteractions));
            AnsiConsole.Write(table);
            if (report.Dropped.Count > 0)
            {
                var dropped = new Table().AddColumns("dropped because", "count");
                foreach (var (reason, count) in report.Dropped) dropped.AddRow(Markup.Escape(reason), N(count));
                AnsiConsole.Write(dropped);
            }
            AnsiConsole.MarkupLineInterpolated($"[green]wrote[/] {outDir}");
            return 0;
        });
        return command;
    }

    private static Command Synth()
    {
        var defaults = new SynthOptions();
        var output = new Option<string>("--out") { Description = "Folder to write the reference layout into (created if needed).", Required = true };
        var users = new Option<int>("--users") { Description = "Number of users. The catalogue scales with it (users / 2 videos by default).", DefaultValueFactory = _ => 2000 };
        var seed = new Option<int>("--seed") { Description = "Random seed; the same seed and options give byte-identical files.", DefaultValueFactory = _ => defaults.Seed };
        var videos = new Option<int>("--videos") { Description = "Number of videos (0 = scale with users: max(topics × max-likes / 2, users / 2)).", DefaultValueFactory = _ => 0 };
        var comments = new Option<int>("--comments-per-video") { Description = "Mean number of comments per video.", DefaultValueFactory = _ => defaults.CommentsPerVideo };
        var topics = new Option<int>("--topics") { Description = "Number of latent topics (1-16).", DefaultValueFactory = _ => defaults.Topics };
        var minLikes = new Option<int>("--min-likes") { Description = "Fewest liked videos per user.", DefaultValueFactory = _ => defaults.MinLikes };
        var maxLikes = new Option<int>("--max-likes") { Description = "Most liked videos per user.", DefaultValueFactory = _ => defaults.MaxLikes };
        var command = new Command("synth", "Generate a synthetic dataset in the reference layout: topic-driven users with drifting interests, Zipf popularity, and comment choices driven by a per-user style (see docs/data.md).")
        {
            output, users, seed, videos, comments, topics, minLikes, maxLikes,
        };
        CliAction.Set(command, async (parse, _) =>
        {
            var options = new SynthOptions
            {
                Users = parse.GetValue(users), Seed = parse.GetValue(seed), Videos = parse.GetValue(videos),
                CommentsPerVideo = parse.GetValue(comments), Topics = parse.GetValue(topics),
                MinLikes = parse.GetValue(minLikes), MaxLikes = parse.GetValue(maxLikes),
            };
            var outDir = parse.GetValue(output)!;
            var dataset = await CliProgress.RunAsync(p => Task.Run(() =>
            {
                var d = SyntheticDataset.Generate(options, p);
                ReferenceLayout.Write(d, outDir, p);
                return d;
            }));
            AnsiConsole.MarkupLineInterpolated($"[green]wrote[/] {outDir}: {N(options.Users)} users, {N(dataset.Catalog.PhotoCount - 1)} videos, {N(dataset.Catalog.CommentCount - 1)} comments, {N(dataset.Sets.Sum(s => (long)s.Count))} examples");
            return 0;
        });
        return command;
    }

    private static Command Stats()
    {
        var dir = DirArgument("Dataset folder in the reference layout.");
        var json = new Option<bool>("--json") { Description = "Print the statistics as JSON instead of tables." };
        var command = new Command("stats", "Describe a dataset: users, videos, comments, interactions, examples per task and split, history lengths, comments per video.") { dir, json };
        CliAction.Set(command, async (parse, _) =>
        {
            var path = parse.GetValue(dir)!;
            var asJson = parse.GetValue(json);
            var stats = asJson
                ? DatasetStats.Compute(ReferenceLayout.Read(path))
                : await CliProgress.RunAsync(p => Task.Run(() => DatasetStats.Compute(ReferenceLayout.Read(path, p))));
            if (asJson)
            {
                var options = new JsonSerializerOptions { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };
                options.Converters.Add(new JsonStringEnumConverter());
                Console.WriteLine(JsonSerializer.Serialize(stats, options));
                return 0;
            }
            var summary = new Table().AddColumns("", "count");
            summary.AddRow("users", N(stats.Users));
            summary.AddRow("videos", N(stats.Videos));
            summary.AddRow("comments", N(stats.Comments));
            summary.AddRow("interactions (liked videos + comment interactions)", N(stats.Interactions));
            summary.AddRow("  liked (user, video) pairs", N(stats.LikedVideos));
            summary.AddRow("  (user, comment) interactions", N(stats.CommentInteractions));
            summary.AddRow("ids stored in all histories", N(stats.HistoryEntries));
            summary.AddRow("comments per video (min/median/p90/max/mean)", D(stats.CommentsPerVideo));
            AnsiConsole.Write(summary);
            var sets = new Table().AddColumns("task", "split", "examples", "users", "positives (mean)");
            foreach (var st in stats.Sets)
                sets.AddRow(st.Task.ToString(), st.Split.ToString(), N(st.Examples), N(st.Users),
                    st.Task == TaskKind.CommRank ? st.Positives.Mean.ToString("F2", CultureInfo.InvariantCulture) : "");
            AnsiConsole.Write(sets);
            var lengths = new Table().AddColumns("history length", "task", "split", "min", "median", "p90", "max", "mean");
            foreach (var (name, pick) in new (string, Func<SetStats, Distribution>)[]
                     { ("videos", st => st.VideoHistory), ("comment entries", st => st.CommentHistoryEntries), ("comments", st => st.CommentHistoryComments) })
                foreach (var st in stats.Sets)
                {
                    var d = pick(st);
                    lengths.AddRow(name, st.Task.ToString(), st.Split.ToString(), N(d.Min), d.Median.ToString("0.#", CultureInfo.InvariantCulture),
                        N(d.P90), N(d.Max), d.Mean.ToString("F1", CultureInfo.InvariantCulture));
                }
            AnsiConsole.Write(lengths);
            return 0;
        });
        return command;
    }

    private static Command BenchSynth()
    {
        var users = new Option<int>("--users") { Description = "Users to generate.", DefaultValueFactory = _ => 100_000 };
        var seed = new Option<int>("--seed") { Description = "Random seed.", DefaultValueFactory = _ => 42 };
        var output = new Option<string?>("--out") { Description = "Also write the reference layout here and time the write." };
        var command = new Command("synth", "Time synthetic generation (users/s) and, with --out, writing the reference layout.") { users, seed, output };
        CliAction.Set(command, async (parse, _) =>
        {
            var options = new SynthOptions { Users = parse.GetValue(users), Seed = parse.GetValue(seed) };
            var outDir = parse.GetValue(output);
            var (dataset, generate, write) = await CliProgress.RunAsync(p => Task.Run(() =>
            {
                var clock = Stopwatch.StartNew();
                var d = SyntheticDataset.Generate(options, p);
                var generated = clock.Elapsed;
                if (outDir is not null) ReferenceLayout.Write(d, outDir, p);
                return (d, generated, clock.Elapsed - generated);
            }));
            var stats = DatasetStats.Compute(dataset);
            AnsiConsole.MarkupLineInterpolated($"generated {N(options.Users)} users in {generate.TotalSeconds:F2} s = {options.Users / generate.TotalSeconds:N0} users/s");
            AnsiConsole.MarkupLineInterpolated($"  {N(stats.Videos)} videos, {N(stats.Comments)} comments, {N(stats.Interactions)} interactions");
            AnsiConsole.MarkupLineInterpolated($"  {N(stats.Sets.Sum(s => (long)s.Examples))} examples, {N(stats.HistoryEntries)} ids in histories");
            if (outDir is not null)
                AnsiConsole.MarkupLineInterpolated($"wrote {outDir} in {write.TotalSeconds:F2} s ({Size(outDir)})");
            return 0;
        });
        return command;
    }

    private static Command BenchLoad()
    {
        var dir = DirArgument("Dataset folder in the reference layout.");
        var command = new Command("load", "Time ReferenceLayout.Read and report managed memory after the load and the process peak working set.") { dir };
        CliAction.Set(command, async (parse, _) =>
        {
            var path = parse.GetValue(dir)!;
            long before = GC.GetTotalMemory(forceFullCollection: true);
            var clock = Stopwatch.StartNew();
            var dataset = await CliProgress.RunAsync(p => Task.Run(() => ReferenceLayout.Read(path, p)));
            var elapsed = clock.Elapsed;
            long after = GC.GetTotalMemory(forceFullCollection: true);
            var stats = DatasetStats.Compute(dataset);
            using var process = Process.GetCurrentProcess();
            AnsiConsole.MarkupLineInterpolated($"loaded {path} ({Size(path)}) in {elapsed.TotalSeconds:F2} s");
            AnsiConsole.MarkupLineInterpolated($"  {N(stats.Users)} users, {N(stats.Interactions)} interactions");
            AnsiConsole.MarkupLineInterpolated($"  {N(stats.Sets.Sum(s => (long)s.Examples))} examples, {N(stats.HistoryEntries)} ids in histories");
            AnsiConsole.MarkupLineInterpolated($"  managed memory after load: {after / 1048576.0:F0} MiB (the dataset: {(after - before) / 1048576.0:F0} MiB)");
            AnsiConsole.MarkupLineInterpolated($"  process peak working set: {process.PeakWorkingSet64 / 1048576.0:F0} MiB");
            GC.KeepAlive(dataset);
            return 0;
        });
        return command;
    }

    private static string N(long n) => n.ToString("N0", CultureInfo.InvariantCulture);

    private static string D(Distribution d) => string.Create(CultureInfo.InvariantCulture, $"{d.Min}/{d.Median:0.#}/{d.P90}/{d.Max}/{d.Mean:F1}");

    private static string Size(string dir) =>
        $"{Directory.EnumerateFiles(dir).Sum(f => new FileInfo(f).Length) / 1048576.0:F0} MiB on disk";
}
