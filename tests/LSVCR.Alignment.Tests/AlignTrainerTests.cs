using LSVCR.Alignment.Decoder;
using LSVCR.Data;
using LSVCR.Modeling;
using LSVCR.Training;
using static TorchSharp.torch;

namespace LSVCR.Alignment.Tests;

public sealed class AlignTrainerTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "lsvcr-align-" + Guid.NewGuid().ToString("N"));

    internal static LsvcrDataset TinyData() => SyntheticDataset.Generate(new SynthOptions
    {
        Users = 24, Seed = 3, Topics = 4, Videos = 16, CommentsPerVideo = 3, MinLikes = 4, MaxLikes = 8, MaxHistory = 10,
    });

    private AlignOptions DecoderOptions(int examples) => new()
    {
        Backbone = TinyDecoder.WriteByteLevel(TinyDecoder.Config(type: "qwen2", tied: true) with { MaxPositions = 512 }, seed: 4, Path.Combine(_root, "llm-" + Guid.NewGuid().ToString("N"))),
        Examples = examples, BatchSize = 4, MaxHistory = 6, ItemTokens = 24, PromptTokens = 256, CheckpointEvery = 2, Seed = 11,
        Lr = 1e-3, Warmup = 0.1, Threads = 1,
    };

    [Fact]
    public void Writes_aligned_sr_weights_and_embeddings_that_stage_2_loads()
    {
        var data = TinyData();
        var o = DecoderOptions(examples: 12);
        var result = AlignTrainer.Run(data, o, Path.Combine(_root, "run"));
        Assert.Equal(3, result.Batches);
        Assert.Equal(3, result.History.Count);
        Assert.All(result.History, h =>
        {
            Assert.True(double.IsFinite(h.Lm) && h.Lm > 0, $"lm {h.Lm}");
            Assert.True(h.Rec > 0 && h.Bhv > 0 && h.Nce > 0);
            Assert.Equal(h.Lm + h.Rec + 0.5 * h.Contrast, h.Total, 3);
            Assert.Equal(h.Bhv + h.Nce, h.Contrast, 3);
        });

        // Re-encoded embeddings: E = 256 columns, one row per catalogue id, pad row zero; they load as stage-2 inputs.
        var (photos, comments) = TextEmbeddings.Load(result.EmbeddingsDir, data.Catalog);
        Assert.Equal(256, photos.Cols);
        Assert.All(photos.Data.AsSpan(0, 256).ToArray(), v => Assert.Equal(0f, v));
        Assert.Contains(photos.Data.Skip(256), v => v != 0f);
        // Identical titles get identical rows (each distinct text encoded once).
        var titles = data.Catalog.PhotoTitles;
        var dup = Enumerable.Range(1, titles.Length - 1).GroupBy(i => titles[i]).FirstOrDefault(g => g.Count() > 1);
        if (dup is not null)
            Assert.Equal(photos.Data.AsSpan(dup.First() * 256, 256).ToArray(), photos.Data.AsSpan(dup.Last() * 256, 256).ToArray());

        // The stage-2 model (ids on) starts from the aligned reccom.* weights: everything loads, ids are fresh.
        var config = new RecComConfig { PhotoCount = data.Catalog.PhotoCount, CommentCount = data.Catalog.CommentCount, TextDim = 256 };
        using var stage2 = new RecCom(config, tensor(photos.Data, photos.Rows, photos.Cols), tensor(comments.Data, comments.Rows, comments.Cols));
        var report = Checkpoint.LoadWeights(stage2, result.SrWeights);
        Assert.Empty(report.Missing);
        Assert.Empty(report.Unexpected);
        Assert.Equal(["gate", "photo_embedding.weight"], report.FreshInitialised.Order());
        var aligned = Checkpoint.ReadStateDict(result.SrWeights)["reccom.llm_adapter.weight"];
        Assert.True(stage2.state_dict()["llm_adapter.weight"].allclose(aligned));

        Assert.True(File.Exists(result.LoraWeights) && File.Exists(result.HeadWeights));
        Assert.Contains(Checkpoint.ReadStateDict(result.LoraWeights).Keys, k => k.EndsWith("q_proj.lora_A"));
        Assert.Contains("llm_emb_mlp.0.weight", Checkpoint.ReadStateDict(result.HeadWeights).Keys);
    }

    [Fact]
    public void Resuming_after_a_kill_gives_the_same_losses()
    {
        var data = TinyData();
        var o = DecoderOptions(examples: 24); // 6 batches, checkpoints after batches 2 and 4 (every 2 optimiser steps)
        var straight = AlignTrainer.Run(data, o, Path.Combine(_root, "straight"));
        Assert.Equal(6, straight.History.Count);

        var killedDir = Path.Combine(_root, "killed");
        Assert.Throws<SimulatedKill>(() => AlignTrainer.Run(data, o, killedDir, afterBatch: b => { if (b == 4) throw new SimulatedKill(); }));
        Assert.False(File.Exists(Path.Combine(killedDir, AlignTrainer.SrFile)));
        var resumed = AlignTrainer.Run(data, o, killedDir);
        Assert.Equal(4, resumed.ResumedAfterBatch); // batch 4 ran, but its checkpoint never happened: redone
        Assert.Equal(straight.History.Count, resumed.History.Count);
        for (int i = 0; i < straight.History.Count; i++)
        {
            Assert.Equal(straight.History[i].Total, resumed.History[i].Total, 4);
            Assert.Equal(straight.History[i].Lm, resumed.History[i].Lm, 4);
            Assert.Equal(straight.History[i].Rec, resumed.History[i].Rec, 4);
        }
        Assert.True(Checkpoint.ReadStateDict(straight.SrWeights)["reccom.p_linear.weight"]
            .allclose(Checkpoint.ReadStateDict(resumed.SrWeights)["reccom.p_linear.weight"], rtol: 1e-4, atol: 1e-6));
    }

    [Fact]
    public void A_checkpoint_of_other_options_is_not_resumed()
    {
        var data = TinyData();
        var dir = Path.Combine(_root, "other");
        var o = DecoderOptions(examples: 8);
        AlignTrainer.Run(data, o, dir);
        var e = Assert.Throws<LsvcrException>(() => AlignTrainer.Run(data, o with { Lr = 5e-4 }, dir));
        Assert.Contains("other options", e.Message);
    }

    [Fact]
    public void Rejects_a_batch_without_in_batch_negatives()
    {
        var e = Assert.Throws<LsvcrException>(() => AlignTrainer.Run(TinyData(), new AlignOptions { BatchSize = 1 }, Path.Combine(_root, "b1")));
        Assert.StartsWith("batch must be at least 2", e.Message);
    }

    private sealed class SimulatedKill : Exception;

    public void Dispose()
    {
        if (Directory.Exists(_root)) Directory.Delete(_root, true);
    }
}

/// <summary>Stage 1 with the real MiniLM backbone on a tiny catalogue: no lm term, everything else trains and is written.</summary>
public sealed class MiniLmAlignTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "lsvcr-align-minilm-" + Guid.NewGuid().ToString("N"));

    [Fact]
    public void Minilm_stage_one_has_no_lm_term_and_writes_256_wide_embeddings()
    {
        var data = SyntheticDataset.Generate(new SynthOptions { Users = 12, Seed = 5, Topics = 4, Videos = 16, CommentsPerVideo = 2, MinLikes = 3, MaxLikes = 5, MaxHistory = 5 });
        var o = new AlignOptions { Examples = 4, BatchSize = 2, MaxHistory = 4, ItemTokens = 16, PromptTokens = 128, Threads = 2, Seed = 1 };
        var result = AlignTrainer.Run(data, o, _root);
        Assert.Equal("minilm", result.Backbone);
        Assert.Equal(2, result.History.Count);
        Assert.All(result.History, h =>
        {
            Assert.True(double.IsNaN(h.Lm), "an encoder has no next-token head");
            Assert.Equal(h.Rec + 0.5 * h.Contrast, h.Total, 3);
        });
        var photos = Npy.Read(Path.Combine(result.EmbeddingsDir, ReferenceLayout.PhotoEmbeddingsFile));
        Assert.Equal((data.Catalog.PhotoCount, 256), (photos.Rows, photos.Cols));
        Assert.Contains(Checkpoint.ReadStateDict(result.LoraWeights).Keys, k => k == "layer.0.query.lora_A");
    }

    public void Dispose()
    {
        if (Directory.Exists(_root)) Directory.Delete(_root, true);
    }
}
