using LSVCR.Data;

namespace LSVCR.Training;

// TrainOptions, the settings of a training run, lives in LSVCR.Core (the services accept it without tensor packages);
// TrainSettings resolves it against an init checkpoint and turns it into the model configuration.

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
        if (Ks.Any(k => k < 1)) throw new LsvcrException($"k values must be ≥ 1 (got {string.Join(",", Ks)})");
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
    /// <summary>Rows computed elsewhere, appended to the report (the pipeline's no-alignment row), so the report is
    /// written once, whole.</summary>
    public IReadOnlyList<ExperimentRow> AdditionalRows { get; init; } = [];

    public static readonly IReadOnlyList<string> AllVariants = global::LSVCR.Training.Variants.All;
}
