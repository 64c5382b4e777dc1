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
    /// <summary>
    /// The default synthetic dataset: sized so the whole run takes about ten minutes on 2 cores, with a catalogue
    /// larger than the users' likes can cover (2.5 videos per user), so most videos are seen only a few times in
    /// training and their texts matter, as in a real long-tail catalogue.
    /// </summary>
    public SynthOptions Synth { get; init; } = new() { Users = 600, Videos = 1500 };
    public EmbedOptions Embed { get; init; } = new();
    /// <summary>Variants trained and evaluated for both tasks (see ExperimentOptions.AllVariants).</summary>
    public IReadOnlyList<string> Variants { get; init; } = ExperimentOptions.AllVariants;
    public IReadOnlyList<TaskKind> Tasks { get; init; } = [TaskKind.Rec, TaskKind.CommRank];
    /// <summary>Six epochs: CommRank needs about that many to learn the users' comment styles (val ndcg@5 still rises
    /// to epoch 6 on the default data); `--epochs 50` reproduces the reference schedule with early stopping.</summary>
    public TrainOptions Training { get; init; } = new() { Epochs = 6 };
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
public sealed record AlignmentOutput(string EmbeddingsDir, string SrCheckpoint, bool Reused = false);

public sealed record PipelineResult(string DataDir, string EmbeddingsDir, string? AlignmentDir, string ReportDir,
    ExperimentReport Report, IReadOnlyList<string> Log);
