using System.Text.Json.Nodes;
using LSVCR.Data;
using LSVCR.Modeling;
using TorchSharp;
using static TorchSharp.torch;

namespace LSVCR.Training.Tests;

public class TrainSettingsTests
{
    private static readonly TrainOptions Custom = new()
    {
        Epochs = 7, BatchSize = 33, Lr = 5e-4, WeightDecay = 0.01, AdamBeta1 = 0.8, AdamBeta2 = 0.98, AdamEps = 1e-6,
        Schedule = "linear", Warmup = 0.05, Patience = 2, IdTextWeight = 0.5, Negatives = 9, Seed = 11,
        Hidden = 32, Heads = 4, Layers = 1, MixLayers = 2, Inner = 64, Dropout = 0.1, AttentionDropout = 0.2,
        MaxPosition = 20, Temperature = 0.1, LayerNormEps = 1e-6, StandardStacking = true, Init = "runs/a", Threads = 1, Shards = 1, Prefetch = 2,
    };

    /// <summary>Library messages name settings, not CLI flags (a service host has no flags).</summary>
    [Fact]
    public void Evaluation_settings_are_checked_with_their_setting_names()
    {
        var e = Assert.Throws<LsvcrException>(() => new EvalOptions { Ks = [0, 5] }.Check());
        Assert.Equal("k values must be ≥ 1 (got 0,5)", e.Message);
        Assert.Equal(ErrorKind.BadInput, e.Kind);
    }

    [Theory]
    [InlineData("full", "full")]
    [InlineData("Full", "full")]
    [InlineData(" FULL ", "full")]
    [InlineData("ID-Only", "id-only")]
    [InlineData("Popularity", "popularity")]
    public void Variant_names_parse_in_any_case_to_the_canonical_name(string typed, string canonical) =>
        Assert.Equal(canonical, Variants.Parse(typed));

    [Fact]
    public void Variant_lists_split_on_commas_and_spaces_and_refuse_unknown_names()
    {
        Assert.Equal(["full", "popularity"], Variants.ParseList(["Full,POPULARITY", "full"]));
        Assert.Equal(["id-only", "text-only"], Variants.ParseList(["id-only text-only"]));
        var e = Assert.Throws<LsvcrException>(() => Variants.ParseList(["full,fulll"]));
        Assert.Equal("unknown variant 'fulll' (expected one of full, id-only, text-only, no-comments, popularity)", e.Message);
        Assert.Throws<LsvcrException>(() => Variants.ParseList([" , "]));
        Assert.Throws<LsvcrException>(() => Variants.Check("Full")); // the library itself takes canonical names only
    }

    [Fact]
    public void A_json_settings_file_round_trips_every_setting()
    {
        using var dir = new TestDir();
        var path = dir.Sub("run.json");
        File.WriteAllText(path, Custom.ToJson());
        Assert.Equal(Custom, TrainSettings.ApplyFile(new TrainOptions(), path));
        // Every key is written (nulls too), so the file documents the whole run.
        Assert.Equal(TrainOptions.Keys, JsonNode.Parse(File.ReadAllText(path))!.AsObject().Select(kv => kv.Key));
        Assert.Equal(new TrainOptions(), TrainOptions.FromJson(new TrainOptions().ToJson(), "defaults"));
    }

    [Fact]
    public void A_yaml_settings_file_sets_the_keys_it_names_and_keeps_the_rest()
    {
        using var dir = new TestDir();
        var path = dir.Sub("run.yaml");
        File.WriteAllText(path, """
            # a short run
            epochs: 1
            dropout: 0.1
            lr: 2e-4
            schedule: linear
            negatives: ~
            standard-stacking: true
            init: "001"
            """);
        var o = TrainSettings.ApplyFile(new TrainOptions(), path);
        Assert.Equal(new TrainOptions { Epochs = 1, Dropout = 0.1, Lr = 2e-4, Schedule = "linear", StandardStacking = true, Init = "001" }, o);
        Assert.Equal(0.1, o.EffectiveAttentionDropout);
    }

    [Fact]
    public void Unknown_keys_and_wrong_types_name_the_key_and_the_file()
    {
        using var dir = new TestDir();
        var path = dir.Sub("run.json");
        File.WriteAllText(path, """{"epochs": 1, "dropuot": 0.1}""");
        var e = Assert.Throws<LsvcrException>(() => TrainSettings.ApplyFile(new TrainOptions(), path));
        Assert.StartsWith($"{path}: unknown key \"dropuot\" (known keys: epochs, batch,", e.Message);

        File.WriteAllText(path, """{"epochs": "ten"}""");
        e = Assert.Throws<LsvcrException>(() => TrainSettings.ApplyFile(new TrainOptions(), path));
        Assert.Equal($"{path}: \"epochs\" must be an integer (got \"ten\")", e.Message);

        File.WriteAllText(path, """{"dropout": null}""");
        e = Assert.Throws<LsvcrException>(() => TrainSettings.ApplyFile(new TrainOptions(), path));
        Assert.Equal($"{path}: \"dropout\" must be a number (got null)", e.Message);

        var yaml = dir.Sub("run.yml");
        File.WriteAllText(yaml, "hidden: 32\nhidden: 64\n");
        e = Assert.Throws<LsvcrException>(() => TrainSettings.ApplyFile(new TrainOptions(), yaml));
        Assert.Equal($"{yaml}: not valid YAML (line 2: Duplicate key hidden)", e.Message);

        File.WriteAllText(path, "[1, 2]");
        e = Assert.Throws<LsvcrException>(() => TrainSettings.ApplyFile(new TrainOptions(), path));
        Assert.StartsWith($"{path}: expected one object of settings", e.Message);
    }

    [Theory]
    [InlineData("""{"hidden": 30, "heads": 4}""", "hidden (30) must be divisible by heads (4)")]
    [InlineData("""{"heads": 3}""", "hidden (64) must be divisible by heads (3)")]
    [InlineData("""{"dropout": 1.0}""", "dropout must be in [0, 1) (got 1)")]
    [InlineData("""{"dropout": -0.1}""", "dropout must be in [0, 1) (got -0.1)")]
    [InlineData("""{"attention-dropout": 1.5}""", "attention-dropout must be in [0, 1) (got 1.5)")]
    [InlineData("""{"adam-beta1": 1.0}""", "adam-beta1 must be in [0, 1) (got 1)")]
    [InlineData("""{"adam-beta2": -0.5}""", "adam-beta2 must be in [0, 1) (got -0.5)")]
    [InlineData("""{"adam-eps": 0}""", "adam-eps must be a positive number (got 0)")]
    [InlineData("""{"lr": 0}""", "lr must be a positive number (got 0)")]
    [InlineData("""{"weight-decay": -1}""", "weight-decay must be ≥ 0 (got -1)")]
    [InlineData("""{"warmup": 1}""", "warmup is a fraction of the training steps in [0, 1) (got 1)")]
    [InlineData("""{"schedule": "cosine"}""", "schedule must be constant or linear (got 'cosine')")]
    [InlineData("""{"epochs": 0}""", "epochs must be at least 1 (got 0)")]
    [InlineData("""{"batch": 0}""", "batch must be at least 1 (got 0)")]
    [InlineData("""{"layers": 0}""", "layers must be at least 1 (got 0)")]
    [InlineData("""{"mix-layers": 0}""", "mix-layers must be at least 1 (got 0)")]
    [InlineData("""{"inner": 0}""", "inner must be at least 1 (got 0)")]
    [InlineData("""{"max-position": 0}""", "max-position must be at least 1 (got 0)")]
    [InlineData("""{"temperature": 0}""", "temperature must be a positive number (got 0)")]
    [InlineData("""{"negatives": 0}""", "negatives must be at least 1 (got 0)")]
    public void Each_invalid_setting_gives_one_message(string json, string message)
    {
        var o = TrainOptions.FromJson(json, "test");
        Assert.Equal([message], o.Validate());
        var e = Assert.Throws<LsvcrException>(() => TrainSettings.Resolve(o));
        Assert.Equal($"invalid training settings: {message}", e.Message);
    }

    [Fact]
    public void Several_problems_are_listed_one_message_each()
    {
        var o = new TrainOptions { Hidden = 30, Heads = 4, Dropout = 1.2, Epochs = 0 };
        Assert.Equal(["epochs must be at least 1 (got 0)", "hidden (30) must be divisible by heads (4)", "dropout must be in [0, 1) (got 1.2)"], o.Validate());
        Assert.Empty(new TrainOptions().Validate());
    }

    [Fact]
    public void Defaults_are_the_reference_model_and_optimizer_unchanged()
    {
        // The settings' defaults must build exactly the model the code built before settings existed (README figures).
        var resolved = TrainSettings.Resolve(new TrainOptions());
        Assert.Equal(new RecComConfig { PhotoCount = 10, CommentCount = 20, TextDim = 16 }, TrainSettings.ModelConfig(resolved, 10, 20, 16));
        Assert.Equal((64, 2, 2, 1, 256, 0.3, 0.3), (resolved.Hidden, resolved.Heads, resolved.Layers, resolved.MixLayers, resolved.Inner, resolved.Dropout, resolved.AttentionDropout));
        Assert.Equal((1e-3, 1e-5, 0.9, 0.999, 1e-8), (resolved.Lr, resolved.WeightDecay, resolved.AdamBeta1, resolved.AdamBeta2, resolved.AdamEps));
        Assert.Equal(SrLoss.DefaultShards, resolved.Shards);
        Assert.Equal(resolved, TrainSettings.Resolve(resolved));
    }

    [Fact]
    public void Custom_settings_reach_the_model_configuration()
    {
        var c = TrainSettings.ModelConfig(TrainSettings.Resolve(Custom with { Init = null }), 10, 20, 16);
        Assert.Equal((32, 4, 1, 2, 64), (c.Hidden, c.Heads, c.EncoderLayers, c.MixLayers, c.Inner));
        Assert.Equal((0.1, 0.2, 20, 0.1, 1e-6, true), (c.HiddenDropout, c.AttentionDropout, c.MaxPosition, c.Temperature, c.LayerNormEps, c.StandardStacking));
    }

    [Fact]
    [Trait("Category", "Torch")]
    public void Init_checkpoint_gives_the_shape_and_a_conflicting_setting_names_both_values()
    {
        using var dir = new TestDir();
        torch.manual_seed(1);
        var config = new RecComConfig { PhotoCount = 5, CommentCount = 8, TextDim = 8, Hidden = 16, Heads = 4, EncoderLayers = 1, MixLayers = 2, Inner = 24 };
        using (var p = zeros(5, 8))
        using (var c = zeros(8, 8))
        using (var model = new RecCom(config, p, c))
        {
            Checkpoint.Save(model, dir.Sub("ckpt"));
            Safetensors_only(model, dir.Sub("weights.safetensors"));
        }

        var fromFolder = TrainSettings.Resolve(new TrainOptions { Init = dir.Sub("ckpt"), Dropout = 0 });
        Assert.Equal((16, 4, 1, 2, 24), (fromFolder.Hidden, fromFolder.Heads, fromFolder.Layers, fromFolder.MixLayers, fromFolder.Inner));
        Assert.Equal(fromFolder, TrainSettings.Resolve(fromFolder with { Heads = 4 }));   // agreeing values are fine

        var e = Assert.Throws<LsvcrException>(() => TrainSettings.Resolve(new TrainOptions { Init = dir.Sub("ckpt"), Hidden = 64, Inner = 24 }));
        Assert.Equal($"hidden 64 conflicts with the init checkpoint {Path.Combine(dir.Sub("ckpt"), "config.json")} (hidden 16): the model shape comes from the checkpoint", e.Message);

        // A bare safetensors file: the shape is read from its header (heads cannot be, so they stay a free setting).
        var fromFile = TrainSettings.Resolve(new TrainOptions { Init = dir.Sub("weights.safetensors"), Heads = 8 });
        Assert.Equal((16, 8, 1, 2, 24), (fromFile.Hidden, fromFile.Heads, fromFile.Layers, fromFile.MixLayers, fromFile.Inner));
        e = Assert.Throws<LsvcrException>(() => TrainSettings.Resolve(new TrainOptions { Init = dir.Sub("weights.safetensors"), Layers = 2 }));
        Assert.Contains("layers 2 conflicts with the init checkpoint", e.Message);
        Assert.Contains("(layers 1)", e.Message);

        Assert.Throws<FileNotFoundException>(() => TrainSettings.Resolve(new TrainOptions { Init = dir.Sub("missing") }));
    }

    private static void Safetensors_only(RecCom model, string path)
    {
        var state = model.state_dict().ToDictionary(kv => "reccom." + kv.Key, kv => kv.Value.detach().contiguous());
        TorchSharp.PyBridge.Safetensors.SaveStateDict(path, state);
    }

    [Fact]
    [Trait("Category", "Torch")]
    public void AdamW_betas_eps_and_weight_decay_reach_the_optimizer_and_its_saved_state()
    {
        using var dir = new TestDir();
        var o = new TrainOptions { Lr = 0.01, WeightDecay = 0.02, AdamBeta1 = 0.8, AdamBeta2 = 0.95, AdamEps = 1e-3 };
        using var w = new TorchSharp.Modules.Parameter(tensor(new[] { 1f, 1f }));
        using var optimizer = TrainSettings.Optimizer([w], o);
        var group = ((TorchSharp.Modules.AdamW.ParamGroup)optimizer.ParamGroups.Single()).Options;
        Assert.Equal((0.8, 0.95, 1e-3, 0.02, 0.01), (group.beta1!.Value, group.beta2!.Value, group.eps!.Value, group.weight_decay!.Value, group.LearningRate!.Value));

        // One step with gradient g: AdamW moves w by lr·(w·wd + g/(|g| + eps)) (bias-corrected moments, decoupled decay),
        // so eps shows in the result: g = 1e-3 with eps = 1e-3 moves by lr/2 (+ the decay), not by lr.
        w.grad = tensor(new[] { 1e-3f, 1f });
        optimizer.step();
        var after = w.detach().data<float>().ToArray();
        Assert.Equal(1 - 0.01 * (0.02 + 1e-3 / (1e-3 + 1e-3)), after[0], 5);
        Assert.Equal(1 - 0.01 * (0.02 + 1 / (1 + 1e-3)), after[1], 5);

        // The saved state carries them: an optimizer created with TorchSharp's defaults takes them over on load (resume).
        var file = dir.Sub("optimizer.bin");
        optimizer.save_state_dict(file);
        using var w2 = new TorchSharp.Modules.Parameter(tensor(new[] { 1f, 1f }));
        using var fresh = torch.optim.AdamW([w2]);
        fresh.load_state_dict(file);
        var loaded = ((TorchSharp.Modules.AdamW.ParamGroup)fresh.ParamGroups.Single()).Options;
        Assert.Equal((0.8, 0.95, 1e-3, 0.02), (loaded.beta1!.Value, loaded.beta2!.Value, loaded.eps!.Value, loaded.weight_decay!.Value));
    }
}
