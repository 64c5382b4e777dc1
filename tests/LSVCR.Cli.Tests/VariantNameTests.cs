using System.Text.Json.Nodes;

namespace LSVCR.Cli.Tests;

/// <summary>train, experiment and pipeline read variant names the same way: any case is the canonical name, anything
/// else is refused with the same message before any work starts.</summary>
public class VariantNameTests
{
    private const string Unknown = "unknown variant 'Fulll' (expected one of full, id-only, text-only, no-comments, popularity)";

    [Fact]
    public async Task Train_and_experiment_accept_variant_names_in_any_case()
    {
        using var dir = new TempDir();
        var synth = await Lsvcr.RunAsync("data", "synth", "--out", dir["data"], "--users", "40", "--videos", "64", "--seed", "3");
        Assert.True(synth.ExitCode == 0, synth.Stderr);
        TrainingSettingsCommandTests.WriteEmbeddings(dir["data"], dir["emb"], 16);
        string[] tiny = ["--data", dir["data"], "--embeddings", dir["emb"], "--epochs", "1", "--batch", "32", "--hidden", "16", "--layers", "1", "--threads", "1"];

        var train = await Lsvcr.RunAsync(["train", "--task", "rec", "--variant", "FULL", "--out", dir["run"], .. tiny]);
        Assert.True(train.ExitCode == 0, train.Stderr + train.Stdout);
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(dir["run"], "best", "config.json")))!;
        Assert.Equal("full", (string)config["metadata"]!["variant"]!);

        var experiment = await Lsvcr.RunAsync(["experiment", "--tasks", "rec", "--variants", "Full,POPULARITY", "--out", dir["exp"], .. tiny]);
        Assert.True(experiment.ExitCode == 0, experiment.Stderr + experiment.Stdout);
        var rows = JsonNode.Parse(File.ReadAllText(dir["exp/report.json"]))!["rows"]!.AsArray();
        Assert.Equal(["full", "popularity"], rows.Select(r => (string)r!["variant"]!).Distinct());
        Assert.True(Directory.Exists(dir["exp/rec/full"]));
    }

    [Theory]
    [InlineData("train", "--variant")]
    [InlineData("experiment", "--variants")]
    [InlineData("pipeline", "--variants")]
    public async Task A_misspelt_variant_is_refused_with_the_same_message_by_every_command(string command, string flag)
    {
        using var dir = new TempDir();
        string[] args = command == "pipeline"
            ? [command, "--data", dir["nope"], "--out", dir["out"], flag, "Fulll"]
            : [command, "--data", dir["nope"], "--embeddings", dir["nope"], "--out", dir["out"], flag, "Fulll", .. command == "train" ? new[] { "--task", "rec" } : []];
        var result = await Lsvcr.RunAsync(args);
        Assert.Equal(1, result.ExitCode);
        Assert.Contains(NoSpace(Unknown), NoSpace(result.Stderr)); // (the console may wrap the line)
        Assert.DoesNotContain("nope", result.Stderr); // refused before the missing dataset is even looked at
    }

    [Fact]
    public async Task Train_refuses_popularity_which_has_no_model()
    {
        using var dir = new TempDir();
        var result = await Lsvcr.RunAsync("train", "--task", "rec", "--data", dir["nope"], "--embeddings", dir["nope"], "--out", dir["out"], "--variant", "Popularity");
        Assert.Equal(1, result.ExitCode);
        Assert.Contains(NoSpace("variant 'popularity' has no model to train"), NoSpace(result.Stderr));
    }

    private static string NoSpace(string s) => System.Text.RegularExpressions.Regex.Replace(s, @"\s+", "");
}
