using Azure;
using MassTransit;
using MassTransit.Configuration;
using MassTransit.Context;
using MassTransit.Middleware;
using MassTransit.Saga;
using Microsoft.Extensions.DependencyInjection;

namespace LSVCR.Orchestration.Sagas;

/// <summary>
/// MassTransit's <see cref="SagaRepository{TSaga}"/> over <see cref="TableSagaStore{TSaga}"/>. A write that loses to a
/// concurrent one throws <see cref="ConcurrencyException"/>; the saga endpoint retries the message (see
/// <see cref="TableSagaRepository.UseConcurrencyRetry"/>), which reloads the instance and applies the message to the
/// state the winner left.
/// </summary>
public static class TableSagaRepository
{
    public static ISagaRepository<TSaga> Create<TSaga>(TableSagaStore<TSaga> store) where TSaga : class, ISaga
    {
        var factory = new TableSagaRepositoryContextFactory<TSaga>(store, new SagaConsumeContextFactory<TableSagaSession<TSaga>, TSaga>());
        return new SagaRepository<TSaga>(factory, loadSagaRepositoryContextFactory: factory);
    }

    /// <summary>Registers the store (a singleton from the container) as the repository of <typeparamref name="TSaga"/>.</summary>
    public static void UseTableStore<TSaga>(this ISagaRepositoryRegistrationConfigurator<TSaga> configurator) where TSaga : class, ISaga
    {
        configurator.RegisterLoadSagaRepository<TSaga, TableSagaRepositoryContextFactory<TSaga>>();
        configurator.RegisterSagaRepository<TSaga, TableSagaSession<TSaga>, SagaConsumeContextFactory<TableSagaSession<TSaga>, TSaga>,
            TableSagaRepositoryContextFactory<TSaga>>();
    }

    /// <summary>
    /// Retries a message whose saga write lost to a concurrent writer (immediately, then with short pauses), with the
    /// in-memory outbox inside the retry so a lost attempt publishes nothing.
    /// </summary>
    public static void UseConcurrencyRetry(this IReceiveEndpointConfigurator endpoint, IRegistrationContext context)
    {
        endpoint.UseMessageRetry(r =>
        {
            r.Handle<ConcurrencyException>();
            r.Intervals(0, 20, 50, 100, 200, 500, 1000, 2000);
        });
        endpoint.UseInMemoryOutbox(context);
    }
}

/// <summary>What one message's saga work read: the ETag of each instance it loaded.</summary>
public sealed class TableSagaSession<TSaga>(TableSagaStore<TSaga> store) where TSaga : class, ISaga
{
    private readonly Dictionary<Guid, ETag> etags = [];

    public TableSagaStore<TSaga> Store => store;

    public async Task<TSaga?> LoadAsync(Guid id, CancellationToken ct)
    {
        if (await store.LoadAsync(id, ct) is not var (instance, etag)) return null;
        etags[id] = etag;
        return instance;
    }

    public async Task InsertAsync(TSaga instance, CancellationToken ct) => etags[instance.CorrelationId] = await store.InsertAsync(instance, ct);

    public async Task UpdateAsync(TSaga instance, CancellationToken ct)
    {
        if (!etags.TryGetValue(instance.CorrelationId, out var etag))
            throw new InvalidOperationException($"{typeof(TSaga).Name} {instance.CorrelationId} is updated without having been read");
        etags[instance.CorrelationId] = await store.UpdateAsync(instance, etag, ct);
    }

    public Task DeleteAsync(TSaga instance, CancellationToken ct) =>
        etags.TryGetValue(instance.CorrelationId, out var etag) ? store.DeleteAsync(instance.CorrelationId, etag, ct) : Task.CompletedTask;
}

public sealed class TableSagaRepositoryContextFactory<TSaga>(TableSagaStore<TSaga> store,
    ISagaConsumeContextFactory<TableSagaSession<TSaga>, TSaga> factory)
    : ISagaRepositoryContextFactory<TSaga>, ILoadSagaRepositoryContextFactory<TSaga> where TSaga : class, ISaga
{
    public Task Send<T>(ConsumeContext<T> context, IPipe<SagaRepositoryContext<TSaga, T>> next) where T : class =>
        next.Send(new TableSagaRepositoryContext<TSaga, T>(new TableSagaSession<TSaga>(store), context, factory));

    public Task SendQuery<T>(ConsumeContext<T> context, ISagaQuery<TSaga> query, IPipe<SagaRepositoryQueryContext<TSaga, T>> next)
        where T : class =>
        // The pipeline correlates every event by run id; a query would need a table scan per message.
        throw new NotSupportedException($"the table saga repository of {typeof(TSaga).Name} correlates by id only");

    public async Task<T> Execute<T>(Func<LoadSagaRepositoryContext<TSaga>, Task<T>> asyncMethod, CancellationToken cancellationToken = default)
        where T : class =>
        await asyncMethod(new TableLoadSagaRepositoryContext<TSaga>(store, cancellationToken));

    public void Probe(ProbeContext context)
    {
        context.Add("persistence", "azure-table");
        context.Add("table", store.TableName);
    }
}

internal sealed class TableSagaRepositoryContext<TSaga, TMessage> : ConsumeContextScope<TMessage>, SagaRepositoryContext<TSaga, TMessage>
    where TSaga : class, ISaga where TMessage : class
{
    private readonly TableSagaSession<TSaga> session;
    private readonly ConsumeContext<TMessage> consumeContext;
    private readonly ISagaConsumeContextFactory<TableSagaSession<TSaga>, TSaga> factory;

    public TableSagaRepositoryContext(TableSagaSession<TSaga> session, ConsumeContext<TMessage> consumeContext,
        ISagaConsumeContextFactory<TableSagaSession<TSaga>, TSaga> factory) : base(consumeContext)
    {
        this.session = session;
        this.consumeContext = consumeContext;
        this.factory = factory;
    }

    // Add: a new instance saved after the saga ran (Save); Insert: saved first (state machines' InsertOnInitial).
    public Task<SagaConsumeContext<TSaga, TMessage>> Add(TSaga instance) =>
        factory.CreateSagaConsumeContext(session, consumeContext, instance, SagaConsumeContextMode.Add);

    public async Task<SagaConsumeContext<TSaga, TMessage>> Insert(TSaga instance)
    {
        try
        {
            await session.InsertAsync(instance, CancellationToken);
        }
        catch (ConcurrencyException)
        {
            // MassTransit's contract: a failed insert returns null and the repository loads the existing instance.
            return null!;
        }
        return await factory.CreateSagaConsumeContext(session, consumeContext, instance, SagaConsumeContextMode.Insert);
    }

    public async Task<SagaConsumeContext<TSaga, TMessage>> Load(Guid correlationId)
    {
        var instance = await session.LoadAsync(correlationId, CancellationToken);
        return instance is null ? null! : await factory.CreateSagaConsumeContext(session, consumeContext, instance, SagaConsumeContextMode.Load);
    }

    public Task Save(SagaConsumeContext<TSaga> context) => session.InsertAsync(context.Saga, CancellationToken);
    public Task Update(SagaConsumeContext<TSaga> context) => session.UpdateAsync(context.Saga, CancellationToken);
    public Task Delete(SagaConsumeContext<TSaga> context) => session.DeleteAsync(context.Saga, CancellationToken);
    public Task Discard(SagaConsumeContext<TSaga> context) => Task.CompletedTask;
    public Task Undo(SagaConsumeContext<TSaga> context) => Task.CompletedTask;

    public Task<SagaConsumeContext<TSaga, T>> CreateSagaConsumeContext<T>(ConsumeContext<T> context, TSaga instance, SagaConsumeContextMode mode)
        where T : class =>
        factory.CreateSagaConsumeContext(session, context, instance, mode);
}

internal sealed class TableLoadSagaRepositoryContext<TSaga>(TableSagaStore<TSaga> store, CancellationToken ct)
    : BasePipeContext(ct), LoadSagaRepositoryContext<TSaga> where TSaga : class, ISaga
{
    public async Task<TSaga> Load(Guid correlationId) => (await store.LoadAsync(correlationId, CancellationToken))?.Instance!;
}
