using LSVCR.Contracts;
using MassTransit;
using Microsoft.Extensions.Logging;

namespace LSVCR.Steps;

/// <summary>
/// A step's consumer: runs the step, and turns a non-transient <see cref="LsvcrException"/> (bad input, internal) into
/// <see cref="StepFailed"/> so the run fails with the library's message. Transient faults are rethrown for the
/// definition's retry policy; once it gives up MassTransit publishes <c>Fault&lt;T&gt;</c>, which fails the run too.
/// </summary>
public abstract class StepConsumer<T>(ILogger logger) : IConsumer<T> where T : class
{
    protected abstract string StepName(T message);
    protected abstract (Guid RunId, string StepKey) Identify(T message);

    /// <summary>The step's work for a message held by the broker (short steps).</summary>
    protected virtual Task RunAsync(ConsumeContext<T> context) => RunAsync(context.Message, context, context.CancellationToken);

    /// <summary>The step's work apart from any delivery: what a long step overrides, so that it can also run under a
    /// durable job record (<see cref="DurableSteps"/>) after its message was acknowledged.</summary>
    protected virtual Task RunAsync(T message, IPublishEndpoint publish, CancellationToken ct) =>
        throw new NotSupportedException($"{GetType().Name} runs only inside a delivery (override RunAsync(message, publish, ct) to run it durably)");

    /// <summary>Run id, step key and step name of a message (the durable job record is keyed by them).</summary>
    public (Guid RunId, string StepKey, string Step) Describe(T message)
    {
        var (runId, key) = Identify(message);
        return (runId, key, StepName(message));
    }

    public Task Consume(ConsumeContext<T> context) => Guarded(context.Message, context, () => RunAsync(context));

    /// <summary>Runs the step outside a delivery (a durable job), with the same failure handling as <see cref="Consume"/>.</summary>
    public Task RunDetachedAsync(T message, IPublishEndpoint publish, CancellationToken ct) =>
        Guarded(message, publish, () => RunAsync(message, publish, ct));

    private async Task Guarded(T message, IPublishEndpoint publish, Func<Task> body)
    {
        var (runId, key) = Identify(message);
        using var scope = logger.BeginScope(new Dictionary<string, object> { ["RunId"] = runId, ["StepKey"] = key });
        try
        {
            await body();
        }
        catch (LsvcrException e) when (e.Kind != ErrorKind.Transient)
        {
            logger.LogError(e, "{Step} of run {RunId} failed: {Reason}", StepName(message), runId, e.Message);
            await publish.Publish(new StepFailed(runId, key, StepName(message), e.Kind, e.Message));
        }
    }
}

/// <summary>Retry of transient faults (storage, broker, a worker's disk) and one message at a time per instance.</summary>
public class StepConsumerDefinition<TConsumer> : ConsumerDefinition<TConsumer> where TConsumer : class, IConsumer
{
    public StepConsumerDefinition(int concurrentMessages = 1)
    {
        ConcurrentMessageLimit = concurrentMessages;
    }

    protected override void ConfigureConsumer(IReceiveEndpointConfigurator endpoint, IConsumerConfigurator<TConsumer> consumer,
        IRegistrationContext context)
    {
        // One message in flight per instance: a second FineTune waits in the queue for another FineTuning instance.
        if (endpoint is IRabbitMqReceiveEndpointConfigurator rabbit) rabbit.PrefetchCount = ConcurrentMessageLimit ?? 1;
        endpoint.UseMessageRetry(r =>
        {
            r.Handle<LsvcrException>(e => e.Kind == ErrorKind.Transient);
            r.Handle<IOException>();
            r.Handle<Azure.RequestFailedException>(e => e.Status is 0 or 408 or 429 or >= 500);
            r.Handle<HttpRequestException>();
            r.Intervals(TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(15));
        });
    }
}
