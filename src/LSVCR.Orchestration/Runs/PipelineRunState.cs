using LSVCR.Contracts;
using MassTransit;

namespace LSVCR.Orchestration.Runs;

/// <summary>
/// One pipeline run as the orchestrator keeps it (persisted after every event; the Runs API reads it). Plain settable
/// members because it is stored as JSON.
/// </summary>
public sealed class PipelineRunState : SagaStateMachineInstance
{
    public Guid CorrelationId { get; set; }
    public string CurrentState { get; set; } = "";
    public DateTimeOffset SubmittedAt { get; set; }
    public DateTimeOffset UpdatedAt { get; set; }
    public PipelineRunOptions Options { get; set; } = new();
    public SyntheticDataSpec? Synthetic { get; set; }
    public DatasetReference? Dataset { get; set; }
    public ArtifactSetReference? Embeddings { get; set; }
    public ArtifactSetReference? Alignment { get; set; }
    public Dictionary<TaskKind, ArtifactSetReference> Models { get; set; } = [];
    public ArtifactSetReference? Report { get; set; }
    public ArtifactSetReference? Bundle { get; set; }
    public string? ModelVersion { get; set; }
    public string? EvaluationSummary { get; set; }
    public List<StepRecord> Steps { get; set; } = [];
    public string? FailedStep { get; set; }
    public string? FailureReason { get; set; }

    public StepRecord? Step(string name) => Steps.FirstOrDefault(s => s.Name == name);
}

/// <summary>One step of a run: what was asked (its key), when, and how it ended.</summary>
public sealed class StepRecord
{
    public string Name { get; set; } = "";
    public string Key { get; set; } = "";
    public StepStatus Status { get; set; }
    public DateTimeOffset StartedAt { get; set; }
    public DateTimeOffset? FinishedAt { get; set; }
    public string? Progress { get; set; }
    public string? Error { get; set; }
}

public enum StepStatus { Running, Completed, Failed }
