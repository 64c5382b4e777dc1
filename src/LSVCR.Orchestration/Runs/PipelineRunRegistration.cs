using LSVCR.Orchestration.Sagas;
using MassTransit;

namespace LSVCR.Orchestration.Runs;

/// <summary>The saga endpoint: concurrency conflicts retried (table-stored state), messages of one run in order.</summary>
public sealed class PipelineRunStateDefinition : SagaDefinition<PipelineRunState>
{
    public PipelineRunStateDefinition()
    {
        EndpointName = "pipeline-runs";
        ConcurrentMessageLimit = 8;
    }

    protected override void ConfigureSaga(IReceiveEndpointConfigurator endpointConfigurator, ISagaConfigurator<PipelineRunState> sagaConfigurator,
        IRegistrationContext context) => endpointConfigurator.UseConcurrencyRetry(context);
}

public static class PipelineRunRegistration
{
    /// <summary>
    /// Adds the pipeline-run state machine. <paramref name="durable"/>: state in the <see cref="TableSagaStore{T}"/> of
    /// <see cref="PipelineRunState"/> registered in the container (the services); otherwise in memory (embedded runs).
    /// </summary>
    public static void AddPipelineRuns(this IBusRegistrationConfigurator bus, bool durable)
    {
        var saga = bus.AddSagaStateMachine<PipelineRunStateMachine, PipelineRunState>(typeof(PipelineRunStateDefinition));
        if (durable) saga.Repository(r => r.UseTableStore());
        else saga.InMemoryRepository();
    }
}
