using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using LSVCR.Data;
using LSVCR.Modeling;
using TorchSharp;
using static TorchSharp.torch;

namespace LSVCR.Training;

/// <summary>One epoch of <c>history.json</c>.</summary>
public sealed record EpochRecord
{
    [JsonPropertyName("epoch")] public int Epoch { get; init; }
    /// <summary>Mean total loss (task + weighted id–text) over the epoch's batches.</summary>
    [JsonPropertyName("loss")] public double Loss { get; init; }
    [JsonPropertyName("task_loss")] public double TaskLoss { get; init; }
    /// <summary>Mean unweighted id–text alignment loss (0 when the variant has no ids or the weight is 0).</summary>
    [JsonPropertyName("id_text_loss")] public double IdTextLoss { get; init; }
    [JsonPropertyName("lr")] public double Lr { get; init; }
    [JsonPropertyName("steps")] public int Steps { get; init; }
    [JsonPropertyName("samples_per_s")] public double SamplesPerSecond { get; init; }
    [JsonPropertyName("seconds")] public double Seconds { get; init; }
    /// <summary>Validation metrics (Rec: sampled protocol; CommRank: its protocol).</summary>
    [JsonPropertyName("val")] public IReadOnlyDictionary<string, double> Validation { get; init; } = new Dictionary<string, double>();
    [JsonPropertyName("best")] public bool Best { get; init; }
}

/// <summary><c>history.json</c>: the effective settings of the run and one record per finished epoch.</summary>
public sealed record RunHistory
{
    [JsonPropertyName("settings")] public required TrainOptions Settings { get; init; }
    [JsonPropertyName("epochs")] public required IReadOnlyList<EpochRecord> Epochs { get; init; }
}

public sealed record TrainResult
{
    public required TaskKind Task { get; init; }
    public required string Variant { get; init; }
    public required string OutDir { get; init; }
    public string BestDir => Path.Combine(OutDir, FineTuner.BestDir);
    public required int EpochsRun { get; init; }
    public required int BestEpoch { get; init; }
    public required double BestValNdcg5 { get; init; }
    public required bool StoppedEarly { get; init; }
    /// <summary>Epochs that were already done when this call started (0 = fresh run).</summary>
    public required int ResumedAfterEpoch { get; init; }
    public required IReadOnlyList<EpochRecord> History { get; init; }
    /// <summary>The effective settings (<see cref="TrainSettings.Resolve"/>).</summary>
    public required TrainOptions Settings { get; init; }
}

/// <summary>
/// Stage-2 fine-tuning (MODEL.md §4): AdamW, constant or linear schedule with warmup, validation ndcg@5 every
/// epoch, early stopping, best and last checkpoints, resumable after a kill.
/// <para>
/// Reproducibility: every random number of a run comes from the run's own generators, never libtorch's process-wide
/// one — the initial weights from a torch generator seeded with the seed, and each epoch's draws (order, history
/// comments, negatives: a <see cref="Random"/>; dropout masks and id–text negatives: the model's generator) from
/// both reseeded with (seed, epoch). An epoch therefore depends only on the weights and optimizer state it starts
/// from, which <c>out/last</c> stores, so a resumed run continues exactly where an uninterrupted one would, and runs
/// sharing a process (concurrently or interleaved) get the same results as alone.
/// </para>
/// </summary>
public static class FineTuner
{
    public const string BestDir = "best", LastDir = "last", HistoryFile = "history.json";
    private const string StateFile = "state.json", OptimizerFile = "optimizer.bin";

    public static Task<TrainResult> RunAsync(LsvcrDataset data, FloatMatrix photoEmbs, FloatMatrix commentEmbs, TaskKind task,
        string variant, string outDir, TrainOptions options, EvalOptions? validation = null,
        IProgress<JobProgress>? progress = null, CancellationToken ct = default)
        // One thread for the whole run: grad mode and dispose scopes are per thread.
        => Task.Factory.StartNew(() => Run(data, photoEmbs, commentEmbs, task, variant, outDir, options, validation ?? new EvalOptions(), progress, ct),
            ct, TaskCreationOptions.LongRunning, TaskScheduler.Default);

    private sealed record RunState
    {
        public required string Fingerprint { get; init; }
        /// <summary>SHA-256 over the contents the run reads (dataset, both embedding tables, initial weights).</summary>
        public string? Inputs { get; init; }
        public int CompletedEpochs { get; init; }
        public long Step { get; init; }
        public int BestEpoch { get; init; }
        public double BestMetric { get; init; } = double.NegativeInfinity;
        public int BadEpochs { get; init; }
        public bool StoppedEarly { get; init; }
        public List<EpochRecord> History { get; init; } = [];
    }

    private static TrainResult Run(LsvcrDataset data, FloatMatrix photoEmbs, FloatMatrix commentEmbs, TaskKind task, string variant,
        string outDir, TrainOptions options, EvalOptions validation, IProgress<JobProgress>? progress, CancellationToken ct)
    {
        // The effective settings: an init checkpoint's model shape, defaults spelled out (checked, one message per problem).
        options = TrainSettings.Resolve(options);
        Variants.Check(variant);
        if (!Variants.IsTrained(variant)) throw new LsvcrException($"variant '{variant}' has no model to train");
        TextEmbeddings.Check(photoEmbs, commentEmbs, data.Catalog);
        var train = data[task, Split.Train];
        var config = Variants.ModelConfig(variant, task, data.Catalog.PhotoCount, data.Catalog.CommentCount, photoEmbs.Cols,
            TrainSettings.ModelConfig(options, data.Catalog.PhotoCount, data.Catalog.CommentCount, photoEmbs.Cols));
        bool dropComments = Variants.DropsComments(variant);
        var source = new BatchSource(data.Catalog, train, training: true, config.MaxPosition, dropComments, options.Negatives);
        if (source.TrainableExamples.Length == 0)
            throw new LsvcrException($"{TaskNames.FileName(task, Split.Train)}: no training examples{(task == TaskKind.CommRank ? " with positives" : "")}");

        Directory.CreateDirectory(outDir);
        string fingerprint = Fingerprint(task, variant, config, options);
        string inputs = InputsHash(data, photoEmbs, commentEmbs, options.Init);
        var state = ReadState(outDir, fingerprint);
        if (state is not null && state.Inputs != inputs)
        {
            // The stored run trained on other contents: it says nothing about this one, so it starts over.
            progress?.Report(new($"train {Protocols.TaskName(task)} {variant}", 0, options.Epochs,
                "inputs changed since the stored run (dataset, embeddings or initial weights): training from scratch"));
            StartOver(outDir);
            state = null;
        }
        int resumedAfter = state?.CompletedEpochs ?? 0;
        state ??= new RunState { Fingerprint = fingerprint, Inputs = inputs };
        string name = $"{Protocols.TaskName(task)} {variant}";

        if (state.StoppedEarly || state.CompletedEpochs >= options.Epochs)
        {
            progress?.Report(new($"train {name}", state.CompletedEpochs, state.CompletedEpochs, "already finished"));
            return Result(state, task, variant, outDir, resumedAfter, options);
        }

        // Thread count, allocator and OpenMP policy are process-wide: the host sets them (Modeling.Cpu.CpuHost).
        using var generator = new Generator(unchecked((ulong)options.Seed));
        using var model = ModelStore.Create(config, photoEmbs, commentEmbs, options.CpuKernels, generator);
        if (options.Init is not null && state.CompletedEpochs == 0)
        {
            var report = ModelStore.LoadWeights(model, Directory.Exists(options.Init) ? ModelStore.Locate(options.Init) : options.Init, exact: false);
            progress?.Report(new($"init {name}", 1, 1, $"{report.Loaded} tensors from {options.Init}" +
                (report.FreshInitialised.Count > 0 ? $"; fresh: {string.Join(", ", report.FreshInitialised)}" : "") +
                (report.Missing.Count > 0 ? $"; missing: {string.Join(", ", report.Missing)}" : "")));
        }
        var parameters = model.parameters().Where(p => p.requires_grad).ToList();
        using var optimizer = TrainSettings.Optimizer(parameters, options);
        if (state.CompletedEpochs > 0)
        {
            var last = Path.Combine(outDir, LastDir);
            ModelStore.LoadWeights(model, last, exact: true);
            optimizer.load_state_dict(Path.Combine(last, OptimizerFile));
        }

        int stepsPerEpoch = (source.TrainableExamples.Length + options.BatchSize - 1) / options.BatchSize;
        long totalSteps = (long)stepsPerEpoch * options.Epochs;
        long step = state.Step;
        var history = state.History;

        for (int epoch = state.CompletedEpochs + 1; epoch <= options.Epochs; epoch++)
        {
            ct.ThrowIfCancellationRequested();
            int epochSeed = Mix(options.Seed, epoch);
            generator.manual_seed(epochSeed);
            var rng = new Random(epochSeed);
            model.train();
            double lossSum = 0, taskSum = 0, idTextSum = 0, lr = 0;
            int steps = 0, samples = 0;
            var clock = Stopwatch.StartNew();
            string stage = $"train {name} epoch {epoch}/{options.Epochs}";
            foreach (var batch in source.Epoch(options.BatchSize, rng, options.Prefetch, ct))
            {
                ct.ThrowIfCancellationRequested();
                lr = LearningRate(options, step, totalSteps);
                foreach (var group in optimizer.ParamGroups) group.LearningRate = lr;
                using (var scope = NewDisposeScope())
                {
                    optimizer.zero_grad();
                    using var sr = batch.ToSrBatch();
                    var losses = SrLoss.Backward(model, sr, task, batch.CandidateTensor(), options.IdTextWeight, options.Shards);
                    optimizer.step();
                    lossSum += losses.Total;
                    taskSum += losses.Task;
                    idTextSum += losses.IdText ?? 0;
                }
                step++;
                steps++;
                samples += batch.Size;
                if (!double.IsFinite(lossSum))
                    throw new LsvcrException($"training diverged at epoch {epoch}, step {steps}: loss is {lossSum} (a lower learning rate?)");
                progress?.Report(new(stage, samples, source.TrainableExamples.Length,
                    $"loss {lossSum / steps:F4}, {samples / Math.Max(1e-9, clock.Elapsed.TotalSeconds):F0} samples/s"));
            }
            double seconds = clock.Elapsed.TotalSeconds;

            var val = Evaluator.Evaluate(new ModelScorer(model), data, task, Split.Val, null, validation with { Ks = [5, 10] },
                dropComments, config.MaxPosition, progress, ct);
            // An empty validation split cannot rank checkpoints: the latest one is kept as best.
            double metric = val.Examples == 0 ? double.NaN : val["ndcg@5"];
            bool better = double.IsNaN(metric) || metric > state.BestMetric;
            var record = new EpochRecord
            {
                Epoch = epoch, Loss = lossSum / steps, TaskLoss = taskSum / steps, IdTextLoss = idTextSum / steps, Lr = lr, Steps = steps,
                SamplesPerSecond = samples / Math.Max(1e-9, seconds), Seconds = seconds, Validation = val.Metrics, Best = better,
            };
            history.Add(record);
            if (better)
                ModelStore.Save(model, new ModelInfo { Task = Protocols.TaskName(task), Variant = variant, Config = config, Epoch = epoch, ValNdcg5 = metric, Settings = options },
                    Path.Combine(outDir, BestDir));
            int bad = better ? 0 : state.BadEpochs + 1;
            state = state with
            {
                CompletedEpochs = epoch, Step = step, BadEpochs = bad, StoppedEarly = bad >= options.Patience, History = history,
                BestEpoch = better ? epoch : state.BestEpoch, BestMetric = better ? (double.IsNaN(metric) ? double.NegativeInfinity : metric) : state.BestMetric,
            };
            SaveLast(model, optimizer, state, new ModelInfo { Task = Protocols.TaskName(task), Variant = variant, Config = config, Epoch = epoch, ValNdcg5 = metric, Settings = options }, options, outDir);
            progress?.Report(new($"train {name}", epoch, options.Epochs,
                $"epoch {epoch}: loss {record.Loss:F4}, val ndcg@5 {metric:F4}{(better ? " (best)" : "")}"));
            if (state.StoppedEarly) break;
        }
        return Result(state, task, variant, outDir, resumedAfter, options);
    }

    /// <summary>
    /// Learning rate of step <paramref name="step"/> (0-based): linear warmup over <see cref="WarmupSteps"/> steps starting
    /// at 0, then constant or linear decay to 0 at the last step — Hugging Face's <c>get_constant_schedule_with_warmup</c>
    /// and <c>get_linear_schedule_with_warmup</c>, which the reference's trainer uses.
    /// </summary>
    public static double LearningRate(TrainOptions o, long step, long totalSteps)
    {
        long warmup = WarmupSteps(o, totalSteps);
        if (step < warmup) return o.Lr * step / warmup;
        if (o.Schedule == "linear")
            return o.Lr * Math.Max(0, totalSteps - step) / Math.Max(1, totalSteps - warmup);
        return o.Lr;
    }

    /// <summary>ceil(warmup × steps), as the Hugging Face trainer counts warmup steps from a ratio.</summary>
    public static long WarmupSteps(TrainOptions o, long totalSteps) => (long)Math.Ceiling(totalSteps * o.Warmup);

    internal static int Mix(int seed, int epoch) => unchecked(seed * 1_000_003 + epoch * 7_919 + 104_729);

    private static TrainResult Result(RunState s, TaskKind task, string variant, string outDir, int resumedAfter, TrainOptions settings) => new()
    {
        Settings = settings,
        Task = task, Variant = variant, OutDir = outDir, EpochsRun = s.CompletedEpochs, BestEpoch = s.BestEpoch,
        BestValNdcg5 = s.BestMetric, StoppedEarly = s.StoppedEarly, ResumedAfterEpoch = resumedAfter, History = s.History,
    };

    /// <summary>The settings that change the trajectory except the epoch budget (more epochs may be asked for on rerun);
    /// what the run reads is keyed by content in <see cref="InputsHash"/> (the initial weights by their bytes, not
    /// their path).</summary>
    private static string Fingerprint(TaskKind task, string variant, RecComConfig config, TrainOptions o) =>
        JsonSerializer.Serialize(new
        {
            task = Protocols.TaskName(task), variant, config, o.BatchSize, o.Lr, o.WeightDecay, o.AdamBeta1, o.AdamBeta2, o.AdamEps, o.Schedule, o.Warmup, o.Patience,
            o.IdTextWeight, o.Negatives, o.Seed, init = o.Init is not null, o.Shards,
        });

    /// <summary>SHA-256 over the contents a run reads: the whole dataset, both text-embedding tables and the initial
    /// weights (the checkpoint folder's files or the state-dict file).</summary>
    internal static string InputsHash(LsvcrDataset data, FloatMatrix photoEmbs, FloatMatrix commentEmbs, string? init) =>
        ContentHash.Of(data.ContentHash(), photoEmbs.ContentHash(), commentEmbs.ContentHash(),
            init is null ? "no init" : ContentHash.OfPath(Directory.Exists(init) ? ModelStore.Locate(init) : init));

    /// <summary>Removes a stored run (checkpoints, resume state, history) before training afresh into its folder.</summary>
    private static void StartOver(string outDir)
    {
        foreach (var dir in new[] { LastDir, LastDir + ".old", BestDir, BestDir + ".old" }.Select(d => Path.Combine(outDir, d)))
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        File.Delete(Path.Combine(outDir, HistoryFile));
    }

    private static RunState? ReadState(string outDir, string fingerprint)
    {
        var last = Path.Combine(outDir, LastDir);
        if (!File.Exists(Path.Combine(last, StateFile)) && Directory.Exists(last + ".old")) last += ".old";
        var path = Path.Combine(last, StateFile);
        if (!File.Exists(path)) return null;
        RunState state;
        try
        {
            state = JsonSerializer.Deserialize<RunState>(File.ReadAllText(path)) ?? throw new JsonException("empty");
        }
        catch (JsonException e)
        {
            throw new LsvcrException($"{path}: unreadable resume state ({e.Message}); delete {outDir} to start over");
        }
        if (state.Fingerprint != fingerprint)
            throw new LsvcrException($"{outDir} holds a run with different settings ({Differences(state.Fingerprint, fingerprint)}); " +
                                     "use another output folder or delete it to start over");
        if (last.EndsWith(".old", StringComparison.Ordinal)) ModelStore.Replace(last, Path.Combine(outDir, LastDir));
        return state;
    }

    /// <summary>The settings two fingerprints disagree on, as "name: stored → now" (nested objects by path; a
    /// setting an older version did not store shows as "(not stored)"); both in full if either does not parse.</summary>
    private static string Differences(string stored, string now)
    {
        try
        {
            if (JsonNode.Parse(stored) is JsonObject a && JsonNode.Parse(now) is JsonObject b)
                return string.Join(", ", Differences(a, b, ""));
        }
        catch (JsonException) { }
        return $"stored: {stored}; now: {now}";

        static IEnumerable<string> Differences(JsonObject a, JsonObject b, string prefix)
        {
            foreach (var key in a.Select(kv => kv.Key).Union(b.Select(kv => kv.Key)))
            {
                var (x, y) = (a[key], b[key]);
                if (JsonNode.DeepEquals(x, y)) continue;
                if (x is JsonObject xo && y is JsonObject yo)
                    foreach (var d in Differences(xo, yo, $"{prefix}{key}.")) yield return d;
                else
                    yield return $"{prefix}{key}: {(a.ContainsKey(key) ? x?.ToJsonString() ?? "null" : "(not stored)")} → " +
                                 $"{(b.ContainsKey(key) ? y?.ToJsonString() ?? "null" : "(none)")}";
            }
        }
    }

    private static void SaveLast(RecCom model, TorchSharp.Modules.AdamW optimizer, RunState state, ModelInfo info, TrainOptions settings, string outDir)
    {
        ModelStore.Save(model, info, Path.Combine(outDir, LastDir), tmp =>
        {
            optimizer.save_state_dict(Path.Combine(tmp, OptimizerFile));
            File.WriteAllText(Path.Combine(tmp, StateFile), JsonSerializer.Serialize(state, Json.Indented));
        });
        // history.json sits beside the checkpoints for people and dashboards; the resume state keeps its own copy.
        var historyPath = Path.Combine(outDir, HistoryFile);
        File.WriteAllText(historyPath + ".tmp", JsonSerializer.Serialize(new RunHistory { Settings = settings, Epochs = state.History }, Json.Indented));
        File.Move(historyPath + ".tmp", historyPath, overwrite: true);
    }
}
