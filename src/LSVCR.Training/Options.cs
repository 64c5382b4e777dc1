using LSVCR.Data;

namespace LSVCR.Training;

/// <summary>Stage-2 fine-tuning settings (MODEL.md §4). Defaults are the reference run's, except the epoch count.</summary>
public sealed record TrainOptions
{
    public int Epochs { get; init; } = 50;
    public int BatchSize { get; init; } = 512;
    public double Lr { get; init; } = 1e-3;
    public double WeightDecay { get; init; } = 1e-5;
    /// <summary><c>constant</c> or <c>linear</c> (linear decay to 0 at the last step); both after the warmup.</summary>
    public string Schedule { get; init; } = "constant";
    /// <summary>Warmup as a fraction of all training steps (0 = none; 0.03 = the stage-1 reference).</summary>
    public double Warmup { get; init; }
    /// <summary>Stop after this many epochs without a better validation ndcg@5.</summary>
    public int Patience { get; init; } = 5;
    public double IdTextWeight { get; init; } = 0.1;
    /// <summary>Rec: null = full softmax over all videos, k = sampled softmax with k uniform negatives.
    /// CommRank: negatives per positive (null = the reference's 19).</summary>
    public int? Negatives { get; init; }
    public int Seed { get; init; } = 42;
    /// <summary>Stage-1 (or any RecCom) checkpoint to start from; null = fresh N(0, 0.02) initialisation.</summary>
    public string? Init { get; init; }
    /// <summary>libtorch intra-op threads for the run (null = libtorch's default, one per core). A process-wide setting
    /// that the host applies (<see cref="Modeling.Cpu.CpuHost.Configure"/>), not the trainer; on small shared machines
    /// 1 is often fastest (oversubscribed OpenMP threads spin).</summary>
    public int? Threads { get; init; }
    /// <summary>Run the model on the fused CPU kernels where they apply (<see cref="Modeling.ModelBackend.Select"/>);
    /// false = the plain TorchSharp modules (<c>--no-cpu-kernels</c>).</summary>
    public bool CpuKernels { get; init; } = true;
    /// <summary>Data-parallel slices of each batch (<see cref="Modeling.SrLoss.Backward"/>): run concurrently when
    /// there is a thread per slice; the result does not depend on the thread count, but does on this number.</summary>
    public int Shards { get; init; } = Modeling.SrLoss.DefaultShards;
    /// <summary>Batches assembled ahead of the model on the background thread.</summary>
    public int Prefetch { get; init; } = 3;
    /// <summary>Model hyper-parameters other than the catalogue sizes / text width / variant switches (null = reference defaults).</summary>
    public Modeling.RecComConfig? Model { get; init; }

    internal const int DefaultCommRankNegatives = 19;

    internal void Check()
    {
        void Require(bool ok, string message) { if (!ok) throw new LsvcrException(message); }
        Require(Epochs >= 1, $"--epochs must be at least 1 (got {Epochs})");
        Require(BatchSize >= 1, $"--batch must be at least 1 (got {BatchSize})");
        Require(Lr > 0 && double.IsFinite(Lr), $"--lr must be a positive number (got {Lr})");
        Require(WeightDecay >= 0, $"--weight-decay must be ≥ 0 (got {WeightDecay})");
        Require(Schedule is "constant" or "linear", $"--schedule must be constant or linear (got '{Schedule}')");
        Require(Warmup is >= 0 and < 1, $"--warmup is a fraction of the training steps in [0, 1) (got {Warmup})");
        Require(Patience >= 1, $"--patience must be at least 1 (got {Patience})");
        Require(IdTextWeight >= 0, $"--id-text-weight must be ≥ 0 (got {IdTextWeight})");
        Require(Negatives is null or >= 1, $"--negatives must be at least 1 (got {Negatives})");
        Require(Threads is null or >= 1, $"--threads must be at least 1 (got {Threads})");
        Require(Shards >= 1, $"--shards must be at least 1 (got {Shards})");
        Require(Prefetch >= 1, $"prefetch must be at least 1 (got {Prefetch})");
    }
}

/// <summary>Evaluation settings (MODEL.md §5).</summary>
public sealed record EvalOptions
{
    /// <summary>Cut-offs; metrics at 1, 5 and 10 are always reported (the paper's set), these are added.</summary>
    public int[] Ks { get; init; } = [1, 5, 10, 20];
    /// <summary>Seed of the candidate sampling; the same seed gives the same candidate lists for every model.</summary>
    public int Seed { get; init; } = 2024;
    public int BatchSize { get; init; } = 256;
    /// <summary>Rec sampled protocol: negatives per target (reference 99).</summary>
    public int SampledNegatives { get; init; } = 99;
    /// <summary>CommRank: the candidate list is capped at this many comments (reference 100).</summary>
    public int MaxCommentCandidates { get; init; } = 100;
    /// <summary>Run the model on the fused CPU kernels where they apply (<see cref="Modeling.ModelBackend.Select"/>);
    /// false = the plain TorchSharp modules (<c>--no-cpu-kernels</c>). Not part of the cached metrics' key: both
    /// backends compute the same scores up to float rounding.</summary>
    [System.Text.Json.Serialization.JsonIgnore] public bool CpuKernels { get; init; } = true;

    public int[] AllKs => [.. new[] { 1, 5, 10 }.Concat(Ks).Distinct().Order()];

    internal void Check()
    {
        if (Ks.Any(k => k < 1)) throw new LsvcrException($"--k values must be ≥ 1 (got {string.Join(",", Ks)})");
        if (BatchSize < 1) throw new LsvcrException($"evaluation batch size must be at least 1 (got {BatchSize})");
        if (SampledNegatives < 1 || MaxCommentCandidates < 2) throw new LsvcrException("candidate counts must be positive");
    }
}

/// <summary>What <see cref="ExperimentRunner"/> trains and evaluates.</summary>
public sealed record ExperimentOptions
{
    public required string OutDir { get; init; }
    public IReadOnlyList<string> Variants { get; init; } = AllVariants;
    public IReadOnlyList<TaskKind> Tasks { get; init; } = [TaskKind.Rec, TaskKind.CommRank];
    public TrainOptions Training { get; init; } = new();
    public EvalOptions Evaluation { get; init; } = new();

    public static readonly IReadOnlyList<string> AllVariants = global::LSVCR.Training.Variants.All;
}
