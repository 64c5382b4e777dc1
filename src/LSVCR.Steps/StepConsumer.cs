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
    protected abstract Task RunAsync(ConsumeContext<T> context);

    public async Task Consume(ConsumeContext<T> context)
    {
        var (runId, key) = Identify(context.Message);
        using var scope = logger.BeginScope(new Dictionary<string, object> { ["RunId"] = runId, ["StepKey"] = key });
        try
        {
            await RunAsync(context);
        }
        catch (LsvcrException e) when (e.Kind != ErrorKind.Transient)
        {
            logger.LogError(e, "{Step} of run {RunId} failed: {Reason}", StepName(context.Message), runId, e.Message);
            await context.Publish(new StepFailed(runId, key, StepName(context.Message), e.Kind, e.Message));
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
