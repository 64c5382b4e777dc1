using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Serialization;
using LSVCR.Alignment.Lora;
using LSVCR.Data;
using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace LSVCR.Alignment;

/// <summary>The loss terms of one batch as logged (lm is NaN for encoder backbones, which have none).</summary>
public sealed record BatchLosses(int Batch, double Lm, double Rec, double Bhv, double Nce, double Contrast, double Total, double Lr, double ExamplesPerSecond);

/// <summary>What a stage-1 run did and wrote.</summary>
public sealed record AlignResult(
    string OutDir, string Backbone, int Examples, int Batches, int OptimizerSteps, int ResumedAfterBatch, bool StoppedByTimeBudget,
    IReadOnlyList<BatchLosses> History, string SrWeights, string LoraWeights, string HeadWeights, string EmbeddingsDir, double TrainSeconds);

/// <summary>
/// Stage 1 (MODEL.md §3): trains LoRA, the heads and the stage-1 SR model jointly with AdamW (linear warmup, then linear
/// decay), gradient accumulation and resumable checkpoints, then writes the aligned SR weights (<c>reccom.*</c>, what
/// <c>lsvcr train --init</c> reads), the adapters, the heads and the re-encoded item embeddings (E columns).
/// A batch is a function of (seed, batch index) — examples, augmentation, positions and dropout — so a run resumed
/// from a checkpoint continues with exactly the batches and losses the uninterrupted run has.
/// </summary>
public static class AlignTrainer
{
    public const string SrFile = "reccom.safetensors", LoraFile = "lora.safetensors", HeadsFile = "heads.safetensors";
    public const string EmbeddingsDir = "embeddings", SummaryFile = "align.json", CheckpointDir = "checkpoint";
    private const string StateFile = "state.json", WeightsFile = "trainable.safetensors", OptimizerFile = "optimizer.bin";

    private static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    private sealed record RunState(string OptionsKey, int BatchesDone, int OptimizerSteps, List<BatchLosses> History);

    /// <param name="afterBatch">called after each batch (tests use it to stop a run as a kill would)</param>
    public static AlignResult Run(LsvcrDataset data, AlignOptions o, string outDir, IProgress<JobProgress>? progress = null,
        CancellationToken ct = default, Action<int>? afterBatch = null)
    {
        o.Validate();
        if (o.Threads is { } threads) set_num_threads(threads);
        Directory.CreateDirectory(outDir);
        manual_seed(o.Seed);
        using var models = AlignmentModels.Create(o);
        var catalog = data.Catalog;
        var sampler = new Stage1Sampler(data)
        {
            MaxHistory = o.MaxHistory, MaxEntryComments = o.MaxEntryComments, AugmentHistory = o.AugmentHistory, AugmentEntry = o.AugmentEntry,
        };
        var pool = sampler.Pool();
        int total = o.Examples ?? pool.Count * o.Epochs;
        var order = Order(pool.Count, total, o.Seed);
        int batches = (total + o.BatchSize - 1) / o.BatchSize;
        if (total < 2) throw new LsvcrException($"stage 1 needs at least 2 examples (got {total})");
        int optimizerSteps = (batches + o.Accumulation - 1) / o.Accumulation;
        int warmupSteps = (int)Math.Ceiling(o.Warmup * optimizerSteps);

        var promptTokens = Math.Min(o.PromptTokens, models.Llm.MaxTokens);
        var prompts = new PromptBuilder(catalog, models.Llm.Tokenizer, promptTokens, withResponse: models.Llm.HasLmHead);
        var items = new ItemEncoder(models.Llm, models.Heads, prompts.Tokens, Math.Min(o.ItemTokens, models.Llm.MaxTokens), models.Device);
        var step = new Stage1Step(catalog, models.Llm, models.Heads, models.Sr, prompts, items, models.Device);

        var trainable = models.Trainable();
        using var optimizer = optim.AdamW(trainable.Select(t => t.Parameter), o.Lr, weight_decay: o.WeightDecay);
        var key = OptionsKey(o, data);
        var state = Resume(outDir, key, trainable, optimizer) ?? new RunState(key, 0, 0, []);
        int resumedAfter = state.BatchesDone;
        var history = state.History;
        int optSteps = state.OptimizerSteps;

        var clock = Stopwatch.StartNew();
        bool timeUp = false;
        models.Train(true);
        int batch = state.BatchesDone;
        for (; batch < batches; batch++)
        {
            ct.ThrowIfCancellationRequested();
            if (o.TimeBudget is { } budget && clock.Elapsed > budget && batch % o.Accumulation == 0)
            {
                timeUp = true;
                break;
            }
            var batchClock = Stopwatch.StartNew();
            int seed = Mix(o.Seed, batch);
            manual_seed(seed);
            var rng = new Random(seed);
            using var positions = new Generator((ulong)seed);
            var examples = order.Skip(batch * o.BatchSize).Take(o.BatchSize).Select(i => sampler.Draw(pool[i].Task, pool[i].Index, rng)).ToList();
            if (examples.Count < 2) break; // a trailing single example has no in-batch negative
            double lr = LearningRate(o, optSteps, optimizerSteps, warmupSteps);
            foreach (var group in optimizer.ParamGroups) group.LearningRate = lr;
            if (batch % o.Accumulation == 0) optimizer.zero_grad();
            BatchLosses logged;
            using (var scope = NewDisposeScope())
            {
                var terms = step.Forward(examples, positions);
                terms.Total.div(o.Accumulation).backward();
                logged = new BatchLosses(batch, terms.Lm?.item<float>() ?? double.NaN, terms.Rec.item<float>(), terms.Bhv.item<float>(),
                    terms.Nce.item<float>(), terms.Contrast.item<float>(), terms.Total.item<float>(), lr,
                    examples.Count / Math.Max(1e-9, batchClock.Elapsed.TotalSeconds));
            }
            if (!double.IsFinite(logged.Total))
                throw new LsvcrException($"stage 1 diverged at batch {batch}: loss {logged.Total} (lower lr?)");
            if ((batch + 1) % o.Accumulation == 0 || batch + 1 == batches)
            {
                optimizer.step();
                optSteps++;
            }
            history.Add(logged);
            progress?.Report(new("align", Math.Min((batch + 1) * o.BatchSize, total), total,
                $"total {logged.Total:F3} (lm {logged.Lm:F3}, rec {logged.Rec:F3}, bhv {logged.Bhv:F3}, nce {logged.Nce:F3}), {logged.ExamplesPerSecond:F1} ex/s"));
            if ((batch + 1) % o.Accumulation == 0 && optSteps % o.CheckpointEvery == 0)
                SaveCheckpoint(outDir, new RunState(key, batch + 1, optSteps, history), trainable, optimizer);
            afterBatch?.Invoke(batch);
        }
        SaveCheckpoint(outDir, new RunState(key, batch, optSteps, history), trainable, optimizer);
        double trainSeconds = clock.Elapsed.TotalSeconds;

        // Outputs: aligned SR weights (reccom.*), adapters, heads, re-encoded embeddings.
        models.Train(false);
        var srPath = Path.Combine(outDir, SrFile);
        SaveTensors(srPath, models.Sr.state_dict().ToDictionary(kv => "reccom." + kv.Key, kv => kv.Value));
        var loraPath = Path.Combine(outDir, LoraFile);
        SaveTensors(loraPath, LoraModel.AdapterState(models.Llm));
        var headsPath = Path.Combine(outDir, HeadsFile);
        SaveTensors(headsPath, models.Heads.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value));
        var (photos, comments) = ReEncoder.Encode(catalog, items, t => prompts.Tokens(t).Length, o.TextDim, o.EncodeBatch, progress, ct);
        var embDir = Path.Combine(outDir, EmbeddingsDir);
        Directory.CreateDirectory(embDir);
        Npy.Write(Path.Combine(embDir, ReferenceLayout.PhotoEmbeddingsFile), photos);
        Npy.Write(Path.Combine(embDir, ReferenceLayout.CommentEmbeddingsFile), comments);

        var result = new AlignResult(outDir, models.Llm.Kind, Math.Min(batch * o.BatchSize, total), batch, optSteps, resumedAfter, timeUp,
            history, srPath, loraPath, headsPath, embDir, trainSeconds);
        File.WriteAllText(Path.Combine(outDir, SummaryFile), JsonSerializer.Serialize(new
        {
            format = "lsvcr-align/1", optionsKey = key, backbone = result.Backbone, options = o with { Lora = o.Lora }, result.Examples, result.Batches,
            result.OptimizerSteps, result.ResumedAfterBatch, result.StoppedByTimeBudget, result.TrainSeconds,
            textDim = o.TextDim, history,
        }, Json));
        return result;
    }

    /// <summary>Shuffled pool indices, repeated (freshly shuffled) when the budget exceeds one pass.</summary>
    private static int[] Order(int poolSize, int total, int seed)
    {
        var rng = new Random(seed);
        var order = new List<int>(total);
        while (order.Count < total)
        {
            var pass = Enumerable.Range(0, poolSize).ToArray();
            rng.Shuffle(pass);
            order.AddRange(pass.Take(total - order.Count));
        }
        return order.ToArray();
    }

    internal static double LearningRate(AlignOptions o, int step, int totalSteps, int warmupSteps)
    {
        if (warmupSteps > 0 && step < warmupSteps) return o.Lr * (step + 1) / warmupSteps;
        int decay = Math.Max(1, totalSteps - warmupSteps);
        return o.Lr * Math.Max(0.0, 1.0 - (double)(step - warmupSteps) / decay);
    }

    private static int Mix(int seed, int batch) => unchecked(seed * 1_000_003 + batch * 7_919 + 15_485_863) & int.MaxValue;

    /// <summary>Options and dataset shape that change what a run computes: a checkpoint or finished run with another key is not reused.</summary>
    public static string OptionsKey(AlignOptions o, LsvcrDataset data) => JsonSerializer.Serialize(new
    {
        o.Backbone, o.Examples, o.Epochs,
        dataset = $"{data.Catalog.PhotoCount}/{data.Catalog.CommentCount}/{data[TaskKind.Rec, Split.Train].Count}/{data[TaskKind.CommRank, Split.Train].Count}", o.BatchSize, o.Accumulation, o.Lr, o.Warmup, o.WeightDecay, o.Seed, o.MaxHistory, o.MaxEntryComments,
        o.ItemTokens, o.PromptTokens, o.TextDim, o.AugmentHistory, o.AugmentEntry, o.Lora.Rank, o.Lora.Alpha, o.Lora.Dropout,
        targets = o.Lora.Targets is null ? null : string.Join(",", o.Lora.Targets),
    });

    private static RunState? Resume(string outDir, string key, IReadOnlyList<(string Name, TorchSharp.Modules.Parameter Parameter)> trainable,
        optim.Optimizer optimizer)
    {
        var dir = Path.Combine(outDir, CheckpointDir);
        // A kill between the two moves of SaveCheckpoint leaves only the previous checkpoint, renamed .old.
        if (!Directory.Exists(dir) && Directory.Exists(dir + ".old")) Directory.Move(dir + ".old", dir);
        var statePath = Path.Combine(dir, StateFile);
        if (!File.Exists(statePath)) return null;
        RunState state;
        try { state = JsonSerializer.Deserialize<RunState>(File.ReadAllText(statePath), Json)!; }
        catch (JsonException e) { throw new LsvcrException($"{statePath}: unreadable stage-1 checkpoint ({e.Message}); delete {dir} to start over", e); }
        if (state.OptionsKey != key)
            throw new LsvcrException($"{dir}: a checkpoint of a stage-1 run with other options; use another output folder or delete {dir}");
        var weights = Safetensors.LoadStateDict(Path.Combine(dir, WeightsFile));
        using (no_grad())
            foreach (var (name, p) in trainable)
            {
                if (!weights.TryGetValue(name, out var w)) throw new LsvcrException($"{dir}: checkpoint lacks {name}");
                p.copy_(w);
            }
        foreach (var w in weights.Values) w.Dispose();
        ((TorchSharp.Modules.AdamW)optimizer).load_state_dict(Path.Combine(dir, OptimizerFile));
        return state;
    }

    /// <summary>Writes the checkpoint into a temporary folder, then swaps it in, so a kill leaves the previous one intact.</summary>
    private static void SaveCheckpoint(string outDir, RunState state, IReadOnlyList<(string Name, TorchSharp.Modules.Parameter Parameter)> trainable,
        optim.Optimizer optimizer)
    {
        var dir = Path.Combine(outDir, CheckpointDir);
        var tmp = dir + ".tmp";
        if (Directory.Exists(tmp)) Directory.Delete(tmp, true);
        Directory.CreateDirectory(tmp);
        SaveTensors(Path.Combine(tmp, WeightsFile), trainable.ToDictionary(t => t.Name, t => (Tensor)t.Parameter));
        ((TorchSharp.Modules.AdamW)optimizer).save_state_dict(Path.Combine(tmp, OptimizerFile));
        File.WriteAllText(Path.Combine(tmp, StateFile), JsonSerializer.Serialize(state, Json));
        var old = dir + ".old";
        if (Directory.Exists(old)) Directory.Delete(old, true);
        if (Directory.Exists(dir)) Directory.Move(dir, old);
        Directory.Move(tmp, dir);
        if (Directory.Exists(old)) Directory.Delete(old, true);
    }

    private static void SaveTensors(string path, Dictionary<string, Tensor> tensors)
    {
        var tmp = path + ".tmp";
        Safetensors.SaveStateDict(tmp, tensors.ToDictionary(kv => kv.Key, kv => kv.Value.detach().cpu().contiguous()));
        File.Move(tmp, path, overwrite: true);
    }
}
