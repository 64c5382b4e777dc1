using System.Text.Json;
using LSVCR.Contracts;
using MassTransit.Serialization;

namespace LSVCR.Orchestration.Tests;

/// <summary>A run's fine-tuning settings are the CLI's settings type: the same keys, the same checks, the same result.</summary>
public class FineTuneSettingsTests
{
    private const string Body = """{"variant": "full", "epochs": 1, "hidden": 32, "weight-decay": 0.01, "adam-beta2": 0.98}""";
    private static readonly JsonSerializerOptions Web = new(JsonSerializerDefaults.Web);

    [Fact]
    public void Keys_of_a_request_mean_what_the_same_keys_in_a_settings_file_mean()
    {
        var settings = JsonSerializer.Deserialize<FineTuneSettings>(Body, Web)!;
        Assert.Equal("full", settings.Variant);
        Assert.Equal(["epochs", "hidden", "weight-decay", "adam-beta2"], settings.Training.Select(p => p.Key));

        var fromFile = TrainOptions.FromJson("""{"epochs": 1, "hidden": 32, "weight-decay": 0.01, "adam-beta2": 0.98}""", "run.json");
        Assert.Equal(fromFile, settings.Resolve(new TrainOptions()));
        Assert.Equal(32, fromFile.Hidden);
        Assert.Equal(0.98, fromFile.AdamBeta2);
    }

    [Fact]
    public void Keys_left_out_keep_the_hosts_defaults()
    {
        var host = new TrainOptions { Threads = 1, Shards = 1, Epochs = 7, Lr = 5e-4 };
        var resolved = JsonSerializer.Deserialize<FineTuneSettings>(Body, Web)!.Resolve(host);
        Assert.Equal((1, 1, 1, 5e-4, 32), (resolved.Threads, resolved.Shards, resolved.Epochs, resolved.Lr, resolved.Hidden));
        Assert.Equal(new TrainOptions { Threads = 1, Shards = 1, Epochs = 7, Lr = 5e-4 }, new FineTuneSettings().Resolve(host));
    }

    [Fact]
    public void Settings_survive_the_bus_and_the_saga_store_serialisers()
    {
        var options = new PipelineRunOptions { FineTune = JsonSerializer.Deserialize<FineTuneSettings>(Body, Web)! };
        var message = new FineTune(Guid.NewGuid(), "k", TaskKind.Rec, new DatasetReference("ds-1", new ArtifactSetReference("local", "d", "h", 1, 10)),
            new ArtifactSetReference("local", "e", "h", 1, 10), null, options);
        foreach (var json in new[] { SystemTextJsonMessageSerializer.Options, Web })
        {
            var back = JsonSerializer.Deserialize<FineTune>(JsonSerializer.Serialize(message, json), json)!;
            Assert.Equal(options.FineTune.Resolve(new TrainOptions()), back.Options.FineTune.Resolve(new TrainOptions()));
            Assert.Equal(4, back.Options.FineTune.Training.Count);
        }
    }

    [Theory]
    [InlineData("""{"hiden": 32}""", "unknown key \"hiden\"")]
    [InlineData("""{"epochs": "ten"}""", "\"epochs\" must be an integer (got \"ten\")")]
    [InlineData("""{"hidden": 30, "heads": 4}""", "hidden (30) must be divisible by heads (4)")]
    [InlineData("""{"dropout": 1.2}""", "dropout must be in [0, 1) (got 1.2)")]
    [InlineData("""{"init": "/tmp/checkpoint"}""", "\"init\" is set by the run itself")]
    public void Each_problem_is_reported_by_its_key(string body, string expected)
    {
        var settings = JsonSerializer.Deserialize<FineTuneSettings>(body, Web)!;
        var problem = Assert.Single(settings.Problems(new TrainOptions()));
        Assert.Contains(expected, problem);
        var e = Assert.Throws<LsvcrException>(() => settings.Resolve(new TrainOptions()));
        Assert.Equal(ErrorKind.BadInput, e.Kind);
        Assert.StartsWith("options.fineTune: ", e.Message);
    }

    [Fact]
    public void Two_bad_values_give_two_messages()
    {
        var settings = JsonSerializer.Deserialize<FineTuneSettings>("""{"epochs": 0, "dropout": -0.1}""", Web)!;
        Assert.Equal(2, settings.Problems(new TrainOptions()).Count);
    }
}
