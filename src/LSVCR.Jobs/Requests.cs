using LSVCR.Training;

namespace LSVCR.Jobs;

/// <summary>What every job returns: the published set, the step key it was published under, and whether this call
/// found it already published (and did no work).</summary>
public sealed record JobOutput(ArtifactSetReference Output, string StepKey, bool Reused);

/// <summary>Encode a dataset set's titles and comments into an <c>embeddings</c> set.</summary>
/// <param name="Dataset">A set in the reference layout (kind <c>dataset</c>).</param>
/// <param name="OutputSet">Where to publish, e.g. <c>embeddings/{dataset}/minilm</c>.</param>
public sealed record EmbeddingsJobRequest(ArtifactSetReference Dataset, string OutputSet)
{
    /// <summary>Encoder settings for this request; null = the configured <see cref="EmbeddingsJobOptions.Embed"/>.</summary>
    public LSVCR.Embeddings.EmbedOptions? Embed { get; init; }
}

/// <summary>Fine-tune one task into a <c>checkpoint</c> set (<c>best/</c> model folder + <c>history.json</c>).</summary>
public sealed record FineTuningJobRequest(ArtifactSetReference Dataset, ArtifactSetReference Embeddings, TaskKind Task, string OutputSet)
{
    public string Variant { get; init; } = Variants.Full;
    /// <summary>Initial weights (a checkpoint set, e.g. stage-1 alignment output); null = fresh initialisation.</summary>
    public ArtifactSetReference? Init { get; init; }
    /// <summary>Training settings for this request; null = the configured <see cref="FineTuningJobOptions.Training"/>.
    /// <see cref="TrainOptions.Init"/> must be null (use <see cref="Init"/>).</summary>
    public TrainOptions? Training { get; init; }
}

/// <summary>Stage-1 alignment of a dataset set into an <c>alignment</c> set (the aligned SR weights, <see cref="Init"/> for
/// fine-tuning) and an <c>embeddings</c> set at <paramref name="EmbeddingsSet"/> (the items re-encoded by the aligned LLM).</summary>
public sealed record AlignmentJobRequest(ArtifactSetReference Dataset, string OutputSet, string EmbeddingsSet)
{
    /// <summary>Stage-1 settings for this request; null = the configured <see cref="AlignmentJobOptions.Align"/>.</summary>
    public LSVCR.Alignment.AlignOptions? Align { get; init; }
}

/// <summary>Evaluate a checkpoint set and the popularity baseline on the test split into a <c>report</c> set (<c>metrics.json</c>).</summary>
public sealed record EvaluationJobRequest(ArtifactSetReference Dataset, ArtifactSetReference Embeddings, ArtifactSetReference Checkpoint, string OutputSet)
{
    public EvalOptions? Evaluation { get; init; }
}

/// <summary>Train and evaluate variants (MODEL.md's ablations) into a <c>report</c> set (<c>report.md</c>, <c>report.json</c>, histories).</summary>
public sealed record ExperimentJobRequest(ArtifactSetReference Dataset, ArtifactSetReference Embeddings, string OutputSet)
{
    public IReadOnlyList<string> Variants { get; init; } = ExperimentOptions.AllVariants;
    public IReadOnlyList<TaskKind> Tasks { get; init; } = [TaskKind.Rec, TaskKind.CommRank];
    public TrainOptions? Training { get; init; }
    public EvalOptions? Evaluation { get; init; }
}

public sealed record EmbeddingsJobResult(JobOutput Job, string Encoder, int Dimension);

public sealed record AlignmentJobResult(JobOutput Job, ArtifactSetReference Embeddings, string Backbone, int Examples, double TrainSeconds);

public sealed record FineTuningJobResult(JobOutput Job, TaskKind Task, string Variant, int EpochsRun, int BestEpoch, double BestValNdcg5);

/// <summary>Test metrics of the model and of the popularity baseline, one result per protocol of the task.</summary>
public sealed record EvaluationJobResult(JobOutput Job, TaskKind Task, string Variant, IReadOnlyList<EvalResult> Model, IReadOnlyList<EvalResult> Popularity)
{
    /// <summary>True when the model beats popularity on <paramref name="metric"/> under the task's first (validation) protocol.</summary>
    public bool BeatsPopularity(string metric = "ndcg@5") => Model[0][metric] > Popularity[0][metric];
}

public sealed record ExperimentJobResult(JobOutput Job, ExperimentReport Report);
