namespace LSVCR.Contracts;

// Commands: imperative, sent to the one service that does the work. Every command carries the run id and a step key
// (run, step and input hashes) by which the worker recognises a redelivery and republishes its earlier result.

/// <summary>Starts a pipeline run (the Runs API sends it to the orchestrator).</summary>
public sealed record StartPipelineRun(Guid RunId, DatasetReference? Dataset, SyntheticDataSpec? Synthetic,
    PipelineRunOptions Options, DateTimeOffset RequestedAt);

/// <summary>Writes a synthetic dataset for the run into the store (done by the Embeddings service, which needs the data anyway).</summary>
public sealed record GenerateDataset(Guid RunId, string StepKey, SyntheticDataSpec Spec);

/// <summary>Encodes the dataset's texts into <c>photo_embs.npy</c> / <c>comment_embs.npy</c>.</summary>
public sealed record ComputeEmbeddings(Guid RunId, string StepKey, DatasetReference Dataset, PipelineRunOptions Options);

/// <summary>One chunk of an embeddings step: any Embeddings instance may take it (competing consumers). The chunks are cut
/// by the plan the step published first (<see cref="Plan"/>), <see cref="PipelineRunOptions.EmbeddingChunkSize"/> texts each.</summary>
public sealed record ComputeEmbeddingChunk(Guid RunId, string StepKey, DatasetReference Dataset, PipelineRunOptions Options,
    ArtifactSetReference Plan, string PlanKey, int Chunk, int Chunks);

/// <summary>The optional stage-1 alignment step (the Alignment service comes with its own issue).</summary>
public sealed record AlignPreferences(Guid RunId, string StepKey, DatasetReference Dataset, ArtifactSetReference Embeddings,
    PipelineRunOptions Options);

/// <summary>Fine-tunes one task (one message per task, so Rec and CommRank run on two FineTuning instances at once).</summary>
public sealed record FineTune(Guid RunId, string StepKey, TaskKind Task, DatasetReference Dataset,
    ArtifactSetReference Embeddings, ArtifactSetReference? Alignment, PipelineRunOptions Options);

/// <summary>Evaluates the fine-tuned models against popularity, writes the report and publishes the model if it passes the gate.</summary>
public sealed record Evaluate(Guid RunId, string StepKey, DatasetReference Dataset, ArtifactSetReference Embeddings,
    IReadOnlyDictionary<TaskKind, ArtifactSetReference> Models, PipelineRunOptions Options);
