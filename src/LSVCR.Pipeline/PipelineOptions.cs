using LSVCR.Data;
using LSVCR.Embeddings;
using LSVCR.Training;

namespace LSVCR.Pipeline;

public sealed record PipelineOptions
{
    /// <summary>Everything the run writes goes below this folder: data/ (when synthesized), embeddings/, experiment/.</summary>
    public required string OutDir { get; init; }
    /// <summary>A dataset in the reference layout; null = synthesize one with <see cref="Synth"/> into OutDir/data.</summary>
    public string? DataDir { get; init; }
    public SynthOptions Synth { get; init; } = new() { Users = 2000 };
    public EmbedOptions Embed { get; init; } = new();
    /// <summary>Variants trained and evaluated for both tasks (see ExperimentOptions.AllVariants).</summary>
    public IReadOnlyList<string> Variants { get; init; } = ExperimentOptions.AllVariants;
    public IReadOnlyList<TaskKind> Tasks { get; init; } = [TaskKind.Rec, TaskKind.CommRank];
    public TrainOptions Training { get; init; } = new() { Epochs = 20 };
    public EvalOptions Evaluation { get; init; } = new();

    /// <summary>
    /// Stage-1 alignment slot (MODEL.md §3). When set, it runs after the first embeddings and returns the folder
    /// of re-encoded (aligned) embeddings plus an initial SR checkpoint; null = skipped (stage 2 starts from scratch).
    /// </summary>
    public IAlignmentStage? Alignment { get; init; }
}

/// <summary>Stage-1 personalised preference alignment, filled in by the alignment library when it exists.</summary>
public interface IAlignmentStage
{
    Task<AlignmentOutput> RunAsync(LsvcrDataset data, string embeddingsDir, string outDir,
        IProgress<JobProgress>? progress, CancellationToken ct);
}

/// <param name="EmbeddingsDir">Items re-encoded with the aligned encoder.</param>
/// <param name="SrCheckpoint">Aligned SR weights, the stage-2 initialisation.</param>
public sealed record AlignmentOutput(string EmbeddingsDir, string SrCheckpoint);

public sealed record PipelineResult(string DataDir, string EmbeddingsDir, string? AlignmentDir, string ReportDir,
    ExperimentReport Report, IReadOnlyList<string> Log);
