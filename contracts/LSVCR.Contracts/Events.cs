namespace LSVCR.Contracts;

// Events: past tense, published for whoever listens (the orchestrator, Serving, dashboards).

/// <summary>The orchestrator accepted a run.</summary>
public sealed record PipelineRunSubmitted(Guid RunId, DateTimeOffset At);

public sealed record DatasetGenerated(Guid RunId, string StepKey, DatasetReference Dataset);

/// <summary>One chunk's vectors are stored (<see cref="Part"/>); <see cref="Present"/> of <see cref="Chunks"/> are stored so far.</summary>
public sealed record EmbeddingChunkComputed(Guid RunId, string StepKey, int Chunk, int Chunks, int Present, ArtifactSetReference Part);

public sealed record EmbeddingsComputed(Guid RunId, string StepKey, ArtifactSetReference Embeddings);

public sealed record AlignmentCompleted(Guid RunId, string StepKey, ArtifactSetReference Alignment, ArtifactSetReference Embeddings);

/// <summary>One task's best checkpoint, last checkpoint and <c>history.json</c>, published as a set.</summary>
public sealed record FineTuningCompleted(Guid RunId, string StepKey, TaskKind Task, ArtifactSetReference Model);

/// <summary>The report was written; <see cref="Passed"/> says whether the quality gate let the model through.</summary>
public sealed record EvaluationCompleted(Guid RunId, string StepKey, ArtifactSetReference Report, bool Passed, string Summary);

/// <summary>A run's model passed the gate: Serving loads the bundle.</summary>
public sealed record ModelPublished(Guid RunId, string ModelVersion, ArtifactSetReference Bundle, ArtifactSetReference Report,
    DateTimeOffset At);

/// <summary>A step gave up: a bad input, an internal error, or a transient fault that outlived its retries.</summary>
public sealed record StepFailed(Guid RunId, string StepKey, string Step, ErrorKind Kind, string Reason);

public sealed record PipelineRunFailed(Guid RunId, string Step, string Reason, DateTimeOffset At);

/// <summary>A long step is still alive (published every few seconds while it works, so the run's status shows progress).</summary>
public sealed record StepProgressed(Guid RunId, string StepKey, string Step, string Stage, long Done, long Total, string? Detail);
