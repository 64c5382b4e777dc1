using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using LSVCR.Cli.Commands;
using LSVCR.Data;
using LSVCR.Modeling;

namespace LSVCR.Cli.Tests;

public class TrainingSettingsCommandTests
{
    private static (TrainingSettingsOptions Options, RootCommand Command) Settings()
    {
        var opts = TrainingSettingsOptions.Create(new TrainOptions());
        var command = new RootCommand();
        opts.AddTo(command);
        return (opts, command);
    }

    [Theory]
    [InlineData("run.json", """{"epochs": 1, "dropout": 0.1, "attention-dropout": 0.25, "hidden": 48, "lr": 0.002}""")]
    [InlineData("run.yaml", "epochs: 1\ndropout: 0.1\nattention-dropout: 0.25\nhidden: 48\nlr: 0.002\n")]
    public void Flags_override_the_settings_file_and_flags_left_out_keep_its_values(string name, string text)
    {
        using var dir = new TempDir();
        File.WriteAllText(dir[name], text);
        var (opts, command) = Settings();

        var fileOnly = opts.Read(command.Parse(["--config", dir[name]]), new TrainOptions());
        Assert.Equal(new TrainOptions { Epochs = 1, Dropout = 0.1, AttentionDropout = 0.25, Hidden = 48, Lr = 0.002 }, fileOnly);

        var both = opts.Read(command.Parse(["--config", dir[name], "--dropout", "0", "--hidden", "32", "--adam-beta2", "0.99"]), new TrainOptions());
        Assert.Equal(fileOnly with { Dropout = 0, Hidden = 32, AdamBeta2 = 0.99 }, both);

        // No file: the command's defaults (here the pipeline's 6 epochs) under the flags.
        var flagsOnly = opts.Read(command.Parse(["--layers", "1", "--temperature", "0.1"]), new TrainOptions { Epochs = 6 });
        Assert.Equal(new TrainOptions { Epochs = 6, Layers = 1, Temperature = 0.1 }, flagsOnly);
    }

    [Fact]
    public void An_unknown_key_in_the_settings_file_names_the_key_and_the_file()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir["run.json"], """{"epochs": 1, "hiden": 32}""");
        var (opts, command) = Settings();
        var e = Assert.Throws<LsvcrException>(() => opts.Read(command.Parse(["--config", dir["run.json"]]), new TrainOptions()));
        Assert.StartsWith($"{dir["run.json"]}: unknown key \"hiden\" (known keys: epochs,", e.Message);
    }

    [Theory]
    [InlineData("train")]
    [InlineData("experiment")]
    [InlineData("pipeline")]
    public void Training_commands_offer_the_model_flags_and_a_settings_file(string name)
    {
        var output = new StringWriter();
        Assert.Equal(0, LsvcrCli.Build().Parse([name, "--help"]).Invoke(new InvocationConfiguration { Output = output, Error = output }));
        var help = output.ToString();
        foreach (var flag in new[] { "--config", "--hidden", "--heads", "--layers", "--mix-layers", "--inner", "--dropout", "--attention-dropout",
                     "--max-position", "--temperature", "--lr", "--weight-decay", "--adam-beta1", "--adam-beta2", "--adam-eps", "--warmup" })
            Assert.Contains(flag + " ", help);
        Assert.Contains("reference 64", help);
    }

    /// <summary>The done-when run: a small model trained from the CLI keeps its shape in the checkpoint, evaluates from it,
    /// and a conflicting shape on --init is refused.</summary>
    [Fact]
    public async Task A_model_trained_with_custom_shape_has_it_in_its_checkpoint_and_evaluates_from_it()
    {
        using var dir = new TempDir();
        var synth = await Lsvcr.RunAsync("data", "synth", "--out", dir["data"], "--users", "40", "--videos", "64", "--seed", "3");
        Assert.True(synth.ExitCode == 0, synth.Stderr);
        var (photos, comments) = WriteEmbeddings(dir["data"], dir["emb"], 16);
        File.WriteAllText(dir["run.json"], """{"epochs": 1, "batch": 32, "hidden": 48, "dropout": 0.2, "threads": 1, "adam-eps": 1e-7}""");

        string[] common = ["--task", "rec", "--data", dir["data"], "--embeddings", dir["emb"]];
        var train = await Lsvcr.RunAsync([.. "train".Split(), .. common, "--out", dir["run"], "--config", dir["run.json"],
            "--hidden", "32", "--layers", "1", "--dropout", "0"]);
        Assert.True(train.ExitCode == 0, train.Stderr + train.Stdout);
        Assert.Contains("hidden 32, heads 2, layers 1, mix-layers 1, inner 256, dropout 0, attention-dropout 0,", train.Stdout);

        // The checkpoint: config (the model's shape) and metadata.settings (the run's effective settings).
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(dir["run"], "best", "config.json")))!;
        Assert.Equal((32, 2, 1, 1, 0.0, 0.0, 16), ((int)config["config"]!["Hidden"]!, (int)config["config"]!["Heads"]!, (int)config["config"]!["EncoderLayers"]!,
            (int)config["config"]!["MixLayers"]!, (double)config["config"]!["HiddenDropout"]!, (double)config["config"]!["AttentionDropout"]!, (int)config["config"]!["TextDim"]!));
        var stored = config["metadata"]!["settings"]!;
        Assert.Equal((1, 32, 32, 1, 0.0, 1e-7), ((int)stored["epochs"]!, (int)stored["batch"]!, (int)stored["hidden"]!, (int)stored["layers"]!, (double)stored["dropout"]!, (double)stored["adam-eps"]!));
        var shapes = Checkpoint.ReadShapes(Path.Combine(dir["run"], "best", "model.safetensors"))!;
        Assert.Equal([50L, 32L], shapes["pposition_embedding.weight"]);
        Assert.Contains("phis_encoder.layer.0.feed_forward.linear_1.weight", shapes.Keys);
        Assert.DoesNotContain(shapes.Keys, k => k.StartsWith("phis_encoder.layer.1.", StringComparison.Ordinal));

        // history.json carries the same settings and the epoch.
        var history = JsonSerializer.Deserialize<Training.RunHistory>(File.ReadAllText(Path.Combine(dir["run"], "history.json")))!;
        Assert.Equal((32, 1, 0.0, 1e-7), (history.Settings.Hidden, history.Settings.Layers, history.Settings.Dropout, history.Settings.AdamEps));
        var epoch = Assert.Single(history.Epochs);

        // AdamW got the settings: the saved optimizer state, loaded into an optimizer built with TorchSharp's defaults.
        var (model, _) = Training.ModelStore.Load(Path.Combine(dir["run"], "last"), photos, comments);
        using (model)
        using (var fresh = TorchSharp.torch.optim.AdamW(model.parameters().Where(p => p.requires_grad)))
        {
            fresh.load_state_dict(Path.Combine(dir["run"], "last", "optimizer.bin"));
            var options = ((TorchSharp.Modules.AdamW.ParamGroup)fresh.ParamGroups.First()).Options;
            Assert.Equal((0.9, 0.999, 1e-7, 1e-5), (options.beta1!.Value, options.beta2!.Value, options.eps!.Value, options.weight_decay!.Value));
        }

        // Evaluation rebuilds the 32-wide one-layer model from config.json and reproduces the validation score it was kept for.
        var eval = await Lsvcr.RunAsync([.. "evaluate --model".Split(), dir["run"], "--data", dir["data"], "--embeddings", dir["emb"], "--split", "val", "--json"]);
        Assert.True(eval.ExitCode == 0, eval.Stderr + eval.Stdout);
        var metrics = JsonNode.Parse(eval.Stdout)!["metrics"]!;
        Assert.Equal(epoch.Validation["ndcg@5"], (double)metrics["ndcg@5"]!, 9);

        // --init: the shape comes from the checkpoint; a conflicting flag names both values.
        var conflict = await Lsvcr.RunAsync([.. "train".Split(), .. common, "--out", dir["run2"], "--init", dir["run"], "--hidden", "64", "--epochs", "1"]);
        Assert.Equal(1, conflict.ExitCode);
        // (Whitespace removed: the console may wrap the line.)
        Assert.Contains(NoSpace($"hidden 64 conflicts with the init checkpoint {Path.Combine(dir["run"], "best", "config.json")} (hidden 32)"), NoSpace(conflict.Stderr));
        Assert.False(Directory.Exists(dir["run2"]));
        var init = await Lsvcr.RunAsync([.. "train".Split(), .. common, "--out", dir["run3"], "--init", dir["run"], "--epochs", "1", "--batch", "32", "--threads", "1"]);
        Assert.True(init.ExitCode == 0, init.Stderr + init.Stdout);
        Assert.Contains("hidden 32, heads 2, layers 1,", init.Stdout);
        var initConfig = JsonNode.Parse(File.ReadAllText(Path.Combine(dir["run3"], "best", "config.json")))!["config"]!;
        Assert.Equal((32, 1), ((int)initConfig["Hidden"]!, (int)initConfig["EncoderLayers"]!));
    }

    private static string NoSpace(string s) => System.Text.RegularExpressions.Regex.Replace(s, @"\s+", "");

    /// <summary>Random unit-length text embeddings with a zero pad row, one per catalogue row.</summary>
    internal static (FloatMatrix Photos, FloatMatrix Comments) WriteEmbeddings(string dataDir, string embDir, int dim)
    {
        var catalog = ReferenceLayout.Read(dataDir).Catalog;
        var rng = new Random(5);
        FloatMatrix Random(int rows)
        {
            var data = new float[rows * dim];
            for (int r = 1; r < rows; r++)
            {
                double norm = 0;
                for (int j = 0; j < dim; j++) { var v = rng.NextDouble() - 0.5; data[r * dim + j] = (float)v; norm += v * v; }
                for (int j = 0; j < dim; j++) data[r * dim + j] /= (float)Math.Sqrt(norm);
            }
            return new FloatMatrix(data, rows, dim);
        }
        Directory.CreateDirectory(embDir);
        var (photos, comments) = (Random(catalog.PhotoCount), Random(catalog.CommentCount));
        Npy.Write(Path.Combine(embDir, "photo_embs.npy"), photos);
        Npy.Write(Path.Combine(embDir, "comment_embs.npy"), comments);
        return (photos, comments);
    }
}
