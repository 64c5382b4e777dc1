using System.Text.Json;

namespace LSVCR.Cli.Tests;

/// <summary>The README's main command, end to end on a tiny synthetic dataset with the real MiniLM encoder.</summary>
public class PipelineCommandTests
{
    [Fact]
    public async Task Pipeline_runs_end_to_end_and_a_rerun_reuses_every_step()
    {
        using var dir = new TempDir();
        string[] args = ["pipeline", "--out", dir.Path, "--users", "120", "--videos", "80", "--epochs", "2",
            "--batch", "64", "--variants", "Full,popularity", "--seed", "3", "--align-examples", "16"];

        var first = await Lsvcr.RunAsync(args);
        Assert.True(first.ExitCode == 0, first.Stderr + first.Stdout);

        // Artifacts: dataset, embeddings with a zero pad row, report with both tasks and both variants.
        Assert.True(File.Exists(dir["data/photo.json"]));
        var manifest = JsonDocument.Parse(File.ReadAllText(dir["embeddings/embeddings.json"])).RootElement;
        Assert.Equal(384, manifest.GetProperty("dimension").GetInt32());
        var photos = Data.Npy.Read(dir["embeddings/photo_embs.npy"]);
        Assert.Equal(81, photos.Rows);
        Assert.All(photos.Row(0).ToArray(), v => Assert.Equal(0f, v));
        Assert.Equal(1.0, Math.Sqrt(photos.Row(1).ToArray().Sum(v => (double)v * v)), 3);

        var report = File.ReadAllText(dir["experiment/report.md"]);
        Assert.Contains("full", report);
        Assert.Contains("popularity", report);
        // Stage 1 ran (bounded sample): aligned SR weights and E = 256 embeddings, and the no-alignment row beside full.
        Assert.True(File.Exists(dir["alignment/reccom.safetensors"]));
        Assert.Equal(256, Data.Npy.Read(dir["alignment/embeddings/photo_embs.npy"]).Cols);
        Assert.Contains("| no-alignment |", report);
        var json = JsonDocument.Parse(File.ReadAllText(dir["experiment/report.json"])).RootElement;
        Assert.Contains("ndcg@10", json.GetRawText());
        Assert.Contains("report.md", first.Stdout + first.Stderr);

        // A rerun finds every artifact in place and recomputes nothing: every step says so, and not one file under
        // --out is written again (same set of files, same sizes, same write times), the report included.
        var before = Snapshot(dir.Path);
        var second = await Lsvcr.RunAsync(args);
        Assert.True(second.ExitCode == 0, second.Stderr + second.Stdout);
        foreach (var step in new[] { "synthetic dataset: reusing", "embeddings: reusing", "alignment: reusing" })
            Assert.Contains(step, second.Stdout);
        Assert.Contains("already finished", second.Stdout + second.Stderr);
        Assert.DoesNotContain("epoch 1/2", second.Stdout + second.Stderr);
        var after = Snapshot(dir.Path);
        var rewritten = before.Keys.Union(after.Keys).Where(f => !before.TryGetValue(f, out var b) || !after.TryGetValue(f, out var a) || a != b).ToList();
        Assert.True(rewritten.Count == 0, $"written again: {string.Join(", ", rewritten)}");
        Assert.True(before.Count > 30, $"{before.Count} files");
        Assert.Equal(report, File.ReadAllText(dir["experiment/report.md"]));
    }

    /// <summary>Every file under <paramref name="root"/>: relative path → size and last write time (UTC ticks).</summary>
    private static SortedDictionary<string, (long Size, long WriteTicks)> Snapshot(string root) =>
        new(Directory.EnumerateFiles(root, "*", SearchOption.AllDirectories)
            .ToDictionary(f => Path.GetRelativePath(root, f), f => (new FileInfo(f).Length, File.GetLastWriteTimeUtc(f).Ticks)), StringComparer.Ordinal);

    [Fact]
    public async Task Pipeline_on_a_missing_dataset_fails_with_one_clear_line()
    {
        using var dir = new TempDir();
        var result = await Lsvcr.RunAsync("pipeline", "--data", dir["nope"], "--out", dir["out"]);
        Assert.Equal(1, result.ExitCode);
        Assert.Contains("nope", result.Stderr);
        Assert.DoesNotContain("   at ", result.Stderr);
    }

    [Fact]
    public async Task Validate_lists_problems_with_file_and_line_and_exits_1()
    {
        using var dir = new TempDir();
        var synth = await Lsvcr.RunAsync("data", "synth", "--out", dir.Path, "--users", "30", "--videos", "64");
        Assert.Equal(0, synth.ExitCode);
        var ok = await Lsvcr.RunAsync("data", "validate", dir.Path);
        Assert.True(ok.ExitCode == 0, ok.Stdout + ok.Stderr);

        var lines = File.ReadAllLines(dir["rec.train.json"]);
        lines[1] = "{not json";
        File.WriteAllLines(dir["rec.train.json"], lines);
        var bad = await Lsvcr.RunAsync("data", "validate", dir.Path);
        Assert.Equal(1, bad.ExitCode);
        Assert.Contains("rec.train.json:2", bad.Stdout + bad.Stderr);
    }

    /// <summary>MODEL.md §1.1: a held-out target the user already met in training is a warning (count and first
    /// lines), exit 0; only <c>--strict</c> fails on it.</summary>
    [Fact]
    public async Task Validate_warns_about_repeat_interactions_and_fails_on_them_only_with_strict()
    {
        using var dir = new TempDir();
        Assert.Equal(0, (await Lsvcr.RunAsync("data", "synth", "--out", dir.Path, "--users", "30", "--videos", "64")).ExitCode);
        using var val = System.Text.Json.JsonDocument.Parse(File.ReadLines(dir["rec.val.json"]).First());
        var (user, target) = (val.RootElement.GetProperty("user_id").GetRawText(), val.RootElement.GetProperty("target_photo").GetRawText());
        var train = File.ReadLines(dir["rec.train.json"]).First();
        using var first = System.Text.Json.JsonDocument.Parse(train);
        var other = first.RootElement.GetProperty("target_photo").GetRawText();
        File.AppendAllText(dir["rec.train.json"],
            $$"""{"user_id": {{user}}, "target_photo": {{other}}, "photo_inter_his": [{{target}}], "comment_inter_his": [[], []]}""" + "\n");

        var lenient = await Lsvcr.RunAsync("data", "validate", dir.Path);
        Assert.True(lenient.ExitCode == 0, lenient.Stdout + lenient.Stderr);
        Assert.Contains("warning: rec.val.json:1: repeat interaction: target video", lenient.Stdout);
        Assert.Contains("1 repeat interaction(s) (rec.val.json 1)", lenient.Stdout);
        var strict = await Lsvcr.RunAsync("data", "validate", dir.Path, "--strict");
        Assert.Equal(1, strict.ExitCode);
        Assert.Contains("1 warning(s)", strict.Stdout + strict.Stderr);
    }
}
