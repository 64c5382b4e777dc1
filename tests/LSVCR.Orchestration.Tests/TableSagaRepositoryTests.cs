using LSVCR.Orchestration.Sagas;
using MassTransit;
using MassTransit.Testing;
using Microsoft.Extensions.DependencyInjection;

namespace LSVCR.Orchestration.Tests;

[Collection(AzuriteCollection.Name)]
public sealed class TableSagaRepositoryTests(AzuriteFixture azurite)
{
    [Fact]
    public async Task Store_round_trips_an_instance_and_rejects_a_write_with_a_stale_etag()
    {
        var store = new TableSagaStore<CounterSaga>(azurite.NewTable(), s => $"count {s.Count}");
        var id = Guid.NewGuid();
        await store.InsertAsync(new CounterSaga { CorrelationId = id, Count = 1, Seen = [7] });

        var (a, etagA) = (await store.LoadAsync(id))!.Value;
        var (b, etagB) = (await store.LoadAsync(id))!.Value;
        Assert.Equal(etagA, etagB);
        a.Count = 10;
        await store.UpdateAsync(a, etagA);
        b.Count = 20;
        var conflict = await Assert.ThrowsAsync<ConcurrencyException>(() => store.UpdateAsync(b, etagB));
        Assert.Equal(id, conflict.CorrelationId);
        Assert.Equal(1, store.Conflicts);

        var (stored, _) = (await store.LoadAsync(id))!.Value;
        Assert.Equal(10, stored.Count);
        Assert.Equal([7], stored.Seen);
        Assert.Null(await store.LoadAsync(Guid.NewGuid()));
        Assert.Equal([10], (await store.ListAsync().ToListAsync()).Select(s => s.Count));
    }

    [Fact]
    public async Task Second_insert_of_an_id_is_a_conflict()
    {
        var store = new TableSagaStore<CounterSaga>(azurite.NewTable());
        var id = Guid.NewGuid();
        await store.InsertAsync(new CounterSaga { CorrelationId = id });
        await Assert.ThrowsAsync<ConcurrencyException>(() => store.InsertAsync(new CounterSaga { CorrelationId = id, Count = 5 }));
        Assert.Equal(0, (await store.LoadAsync(id))!.Value.Instance.Count);
    }

    [Fact]
    public async Task Two_concurrent_updates_of_one_run_one_wins_and_the_other_retries_on_the_new_state()
    {
        var store = new TableSagaStore<CounterSaga>(azurite.NewTable());
        var gate = new PeerGate(2);
        await using var provider = new ServiceCollection()
            .AddSingleton(store)
            .AddSingleton(gate)
            .AddMassTransitTestHarness(x => x.AddSaga<CounterSaga>(typeof(CounterSagaDefinition)).Repository(r => r.UseTableStore()))
            .BuildServiceProvider(true);
        var harness = provider.GetRequiredService<ITestHarness>();
        await harness.Start();

        var id = Guid.NewGuid();
        await harness.Bus.Publish(new StartCounter(id));
        await WaitUntil(async () => await store.LoadAsync(id) is not null);
        await harness.Bus.Publish(new Bump(id));
        await harness.Bus.Publish(new Bump(id));
        await WaitUntil(async () => (await store.LoadAsync(id))?.Instance.Count == 2);

        var final = (await store.LoadAsync(id))!.Value.Instance;
        // Both first attempts read count 0 and met at the gate; one write landed, the other conflicted, was retried,
        // and read the winner's state (count 1) before its own increment.
        Assert.Equal([0, 1], final.Seen);
        Assert.Equal(1, store.Conflicts);
        Assert.False(await harness.Published.Any<Fault<Bump>>());
    }

    private static async Task WaitUntil(Func<Task<bool>> condition)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException("condition not met within 30 s");
            await Task.Delay(50);
        }
    }
}

public sealed record StartCounter(Guid CorrelationId) : CorrelatedBy<Guid>;
public sealed record Bump(Guid CorrelationId) : CorrelatedBy<Guid>;

/// <summary>Lets the first delivery of each of two messages continue only once both have read the saga.</summary>
public sealed class PeerGate(int peers)
{
    private readonly TaskCompletionSource all = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int arrived;

    public Task Arrive()
    {
        if (Interlocked.Increment(ref arrived) == peers) all.SetResult();
        return all.Task.WaitAsync(TimeSpan.FromSeconds(20));
    }
}

public sealed class CounterSaga : ISaga, InitiatedBy<StartCounter>, Orchestrates<Bump>
{
    public Guid CorrelationId { get; set; }
    public int Count { get; set; }
    public List<int> Seen { get; set; } = [];

    public Task Consume(ConsumeContext<StartCounter> context) => Task.CompletedTask;

    public async Task Consume(ConsumeContext<Bump> context)
    {
        Seen.Add(Count);
        if (context.GetRetryAttempt() == 0) await context.GetPayload<IServiceProvider>().GetRequiredService<PeerGate>().Arrive();
        Count++;
    }
}

public sealed class CounterSagaDefinition : SagaDefinition<CounterSaga>
{
    public CounterSagaDefinition() => ConcurrentMessageLimit = 4;

    protected override void ConfigureSaga(IReceiveEndpointConfigurator endpointConfigurator, ISagaConfigurator<CounterSaga> sagaConfigurator,
        IRegistrationContext context) => endpointConfigurator.UseConcurrencyRetry(context);
}
