using LSVCR.Modeling.Cpu;
using System.Collections;
using System.Text.Json.Nodes;
using LSVCR.Data;
using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace LSVCR.Modeling.Tests;

public sealed class CheckpointTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("lsvcr-ckpt-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static Tensor Scores(RecCom model, TaskKind task = TaskKind.Rec)
    {
        model.eval();
        using var _ = no_grad();
        using var batch = Tiny.Batch();
        var user = model.Encode(batch, task).User;
        return task == TaskKind.Rec
            ? model.ScoreAllVideos(user)
            : model.ScoreCandidates(user, tensor(new long[,] { { 1, 2, 3 }, { 8, 9, 0 }, { 4, 5, 6 } }), task);
    }

    [Fact]
    public void Saved_and_reloaded_checkpoint_gives_identical_scores_and_keeps_config_and_metadata()
    {
        var config = Tiny.Config(c => c with { Temperature = 0.1 });
        using var model = Tiny.Model(config, seed: 4);
        var before = Scores(model);
        var beforeComm = Scores(model, TaskKind.CommRank);
        Checkpoint.Save(model, _dir, new JsonObject { ["seed"] = 42, ["task"] = "rec", ["embeddings"] = new JsonObject { ["encoder"] = "minilm" } });
        Assert.Equal([Checkpoint.ConfigFile, Checkpoint.WeightsFile], Directory.GetFiles(_dir).Select(Path.GetFileName).Order());

        var (photo, comment) = Tiny.Texts();
        var (loaded, info, report) = Checkpoint.Load(_dir, photo, comment);
        using (loaded)
        {
            Assert.True(report.IsExact, string.Join("; ", report.Missing.Concat(report.Unexpected)));
            Assert.Equal(config, info.Config);
            Assert.Equal(42, (int)info.Metadata["seed"]!);
            Assert.Equal("minilm", (string)info.Metadata["embeddings"]!["encoder"]!);
            Assert.True(Scores(loaded).allclose(before, 0, 0));
            Assert.True(Scores(loaded, TaskKind.CommRank).allclose(beforeComm, 0, 0));
        }
        // The text tables are inputs, not weights: the file holds exactly the reference parameters.
        var keys = Safetensors.LoadStateDict(Path.Combine(_dir, Checkpoint.WeightsFile)).Keys;
        Assert.Equal(RecComTests.ReferenceKeys().Order(), keys.Order());
    }

    [Theory]
    [InlineData("base_model.model.reccom.", "stage.bin")]
    [InlineData("reccom.", "stage.pt")]
    [InlineData("", "plain.pt")]
    public void Reference_state_dict_with_prefixes_loads_and_scores_the_same(string prefix, string file)
    {
        using var source = Tiny.Model(seed: 8);
        var expected = Scores(source);
        var table = new Hashtable();
        foreach (var (k, v) in source.state_dict()) table[prefix + k] = v;
        table["base_model.model.transformer.encoder.layers.0.self_attention.query_key_value.lora_A.default.weight"] = randn(4, 8);
        table["llm_emb_mlp.0.weight"] = randn(2, 8);
        var path = Path.Combine(_dir, file);
        PyTorchPickler.PickleStateDict(path, table);

        using var target = Tiny.Model(seed: 9);
        Assert.False(Scores(target).allclose(expected, 1e-3, 1e-3));
        var report = Checkpoint.LoadWeights(target, path);
        Assert.Empty(report.Missing);
        Assert.Empty(report.FreshInitialised);
        Assert.Equal(
            ["base_model.model.transformer.encoder.layers.0.self_attention.query_key_value.lora_A.default.weight", "llm_emb_mlp.0.weight"],
            report.Unexpected.Order());
        Assert.True(Scores(target).allclose(expected, 1e-6, 1e-6));
    }

    [Fact]
    public void Reference_safetensors_file_loads()
    {
        using var source = Tiny.Model(seed: 8);
        var path = Path.Combine(_dir, "ref.safetensors");
        Safetensors.SaveStateDict(path, source.state_dict().ToDictionary(kv => "reccom." + kv.Key, kv => kv.Value));
        using var target = Tiny.Model(seed: 9);
        var report = Checkpoint.LoadWeights(target, path);
        Assert.True(report.IsExact);
        Assert.Equal(RecComTests.ReferenceKeys().Count(), report.Loaded);
        Assert.True(Scores(target).allclose(Scores(source), 1e-6, 1e-6));
    }

    [Fact]
    public void Stage1_file_gets_fresh_photo_embedding_and_gate_and_resized_position_tables()
    {
        // Stage 1: no ids, max_position 3. Stage 2: ids, max_position 5.
        using var stage1 = Tiny.Model(Tiny.Config(c => c with { UseIds = false, MaxPosition = 3 }), seed: 2);
        var path = Path.Combine(_dir, "stage1.bin");
        var table = new Hashtable();
        foreach (var (k, v) in stage1.state_dict()) table["base_model.model.reccom." + k] = v;
        PyTorchPickler.PickleStateDict(path, table);

        using var stage2 = Tiny.Model(seed: 6);
        var gateBefore = stage2.state_dict()["gate"].item<float>();
        var report = Checkpoint.LoadWeights(stage2, path);
        Assert.Equal(["gate", "photo_embedding.weight"], report.FreshInitialised.Order());
        Assert.Empty(report.Missing);
        Assert.Equal(2, report.ShapeMismatches.Count);
        Assert.Contains(report.ShapeMismatches, m => m.StartsWith("base_model.model.reccom.pposition_embedding.weight: [3, 8] → [5, 8]"));
        Assert.Equal(1f, gateBefore);
        Assert.Equal(1f, stage2.state_dict()["gate"].item<float>());

        var old = stage1.state_dict()["pposition_embedding.weight"];
        var resized = stage2.state_dict()["pposition_embedding.weight"];
        Assert.True(resized.narrow(0, 0, 3).allclose(old, 0, 0));
        var mean = old.mean([0]);
        Assert.True(resized[3].allclose(mean, 1e-6, 1e-7));
        Assert.True(resized[4].allclose(mean, 1e-6, 1e-7));
        Assert.True(stage2.state_dict()["llm_adapter.weight"].allclose(stage1.state_dict()["llm_adapter.weight"], 0, 0));
    }

    [Fact]
    public void Longer_position_tables_are_truncated()
    {
        using var t = arange(14f).reshape(7, 2);
        using var r = Checkpoint.ResizePositions(t, 3);
        Assert.Equal(new float[] { 0, 1, 2, 3, 4, 5 }, r.data<float>().ToArray());
        using var grown = Checkpoint.ResizePositions(arange(4f).reshape(2, 2), 4);
        Assert.Equal(new float[] { 0, 1, 2, 3, 1, 2, 1, 2 }, grown.data<float>().ToArray());
    }

    [Fact]
    public void Core_shape_mismatch_is_a_clear_error_naming_the_key_and_leaves_the_model_unchanged()
    {
        using var other = Tiny.Model(Tiny.Config(c => c with { PhotoCount = 9 }));
        var (photo, comment) = Tiny.Texts(photos: 9);
        var path = Path.Combine(_dir, "other.pt");
        var table = new Hashtable();
        foreach (var (k, v) in other.state_dict()) table["reccom." + k] = v;
        PyTorchPickler.PickleStateDict(path, table);

        using var model = Tiny.Model(seed: 12);
        var before = Scores(model);
        var e = Assert.Throws<LsvcrException>(() => Checkpoint.LoadWeights(model, path));
        Assert.Contains("reccom.photo_embedding.weight", e.Message);
        Assert.Contains("[9, 8]", e.Message);
        Assert.True(Scores(model).allclose(before, 0, 0));
    }

    [Fact]
    public void Bad_files_give_one_clear_error()
    {
        using var model = Tiny.Model();
        var garbage = Path.Combine(_dir, "garbage.pt");
        File.WriteAllText(garbage, "this is not a pickle");
        var e = Assert.Throws<LsvcrException>(() => Checkpoint.LoadWeights(model, garbage));
        Assert.StartsWith(garbage + ": not a readable PyTorch state-dict file", e.Message);

        var badSafe = Path.Combine(_dir, "bad.safetensors");
        File.WriteAllBytes(badSafe, [1, 2, 3]);
        Assert.StartsWith(badSafe + ": not a readable safetensors file", Assert.Throws<LsvcrException>(() => Checkpoint.LoadWeights(model, badSafe)).Message);

        Assert.Throws<FileNotFoundException>(() => Checkpoint.LoadWeights(model, Path.Combine(_dir, "none.pt")));

        File.WriteAllText(Path.Combine(_dir, Checkpoint.ConfigFile), "{\"format\": \"something-else\"}");
        var (p, c) = Tiny.Texts();
        var ce = Assert.Throws<LsvcrException>(() => Checkpoint.Load(_dir, p, c));
        Assert.Contains("config.json: field \"format\"", ce.Message);
        File.WriteAllText(Path.Combine(_dir, Checkpoint.ConfigFile), "{ not json");
        Assert.Contains("invalid checkpoint config", Assert.Throws<LsvcrException>(() => Checkpoint.Load(_dir, p, c)).Message);
    }

    [Fact]
    public void Save_replaces_an_existing_checkpoint_and_leaves_no_temp_files()
    {
        using var a = Tiny.Model(seed: 1);
        using var b = Tiny.Model(seed: 2);
        Checkpoint.Save(a, _dir);
        Checkpoint.Save(b, _dir);
        Assert.Equal(2, Directory.GetFiles(_dir).Length);
        var (p, c) = Tiny.Texts();
        var (loaded, _, _) = Checkpoint.Load(_dir, p, c);
        using (loaded) Assert.True(Scores(loaded).allclose(Scores(b), 0, 0));
    }
}
