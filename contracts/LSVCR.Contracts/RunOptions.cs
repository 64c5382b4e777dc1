namespace LSVCR.Contracts;

/// <summary>
/// The options of one pipeline run, as the Runs API accepts them and every step receives them. Null members keep the
/// library defaults (those of <c>lsvcr pipeline</c>), so a message stays small and defaults live in one place.
/// </summary>
public sealed record PipelineRunOptions
{
    /// <summary>Text encoder of the embeddings step (<c>minilm</c> or <c>hash</c>, the tiny test encoder).</summary>
    public string Encoder { get; init; } = "minilm";
    /// <summary>Texts per Embeddings chunk message: the unit competing Embeddings instances share.</summary>
    public int EmbeddingChunkSize { get; init; } = 4096;
    public IReadOnlyList<TaskKind> Tasks { get; init; } = [TaskKind.Rec, TaskKind.CommRank];
    public FineTuneSettings FineTune { get; init; } = new();
    public QualityGate Gate { get; init; } = new();
    /// <summary>Run the optional stage-1 alignment step between embeddings and fine-tuning.</summary>
    public bool Align { get; init; }
}

/// <summary>Stage-2 settings a run may override (MODEL.md §4); null keeps the library default.</summary>
public sealed record FineTuneSettings
{
    public int? Epochs { get; init; }
    public int? BatchSize { get; init; }
    public double? Lr { get; init; }
    public int? Seed { get; init; }
    public int? Patience { get; init; }
    /// <summary>Variant of the SR model trained for publication (default <c>full</c>).</summary>
    public string Variant { get; init; } = "full";
}

/// <summary>
/// When a run's model is published: it must beat the popularity baseline on both tasks by <see cref="MinLift"/>
/// (ndcg@10 ratio) unless <see cref="Enabled"/> is false (e.g. for tiny test data, where nothing is learnt).
/// </summary>
public sealed record QualityGate(bool Enabled = true, double MinLift = 1.0, string Metric = "ndcg@10");
