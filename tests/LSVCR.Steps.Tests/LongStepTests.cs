using System.Collections.Concurrent;
using LSVCR.Orchestration.Messaging;
using LSVCR.TestServers;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace LSVCR.Steps.Tests;

public sealed record SlowDurableStep(Guid RunId, string StepKey, double Seconds);
public sealed record SlowPlainStep(Guid RunId, double Seconds);
public sealed record SlowStepDone(Guid RunId, string Kind);

/// <summary>A long step run durably: counts its starts and completions per run.</summary>
public sealed class SlowDurableConsumer(ILogger<SlowDurableConsumer> logger) : StepConsumer<SlowDurableStep>(logger)
{
    public static readonly ConcurrentDictionary<Guid, int> Started = new(), Completed = new();

    protected override string StepName(SlowDurableStep m) => "slow";
    protected override (Guid, string) Identify(SlowDurableStep m) => (m.RunId, m.StepKey);

    protected override async Task RunAsync(SlowDurableStep m, IPublishEndpoint publish, CancellationToken ct)
    {
        Started.AddOrUpdate(m.RunId, 1, (_, n) => n + 1);
        await Task.Delay(TimeSpan.FromSeconds(m.Seconds), ct);
        Completed.AddOrUpdate(m.RunId, 1, (_, n) => n + 1);
        await publish.Publish(new SlowStepDone(m.RunId, "durable"), ct);
    }
}

/// <summary>The same long step holding its delivery (the control: the broker's timeout must bite it).</summary>
public sealed class SlowPlainConsumer : IConsumer<SlowPlainStep>
{
    public static readonly ConcurrentDictionary<Guid, int> Started = new(), Completed = new();

    public async Task Consume(ConsumeContext<SlowPlainStep> context)
    {
        Started.AddOrUpdate(context.Message.RunId, 1, (_, n) => n + 1);
        await Task.Delay(TimeSpan.FromSeconds(context.Message.Seconds));
        Completed.AddOrUpdate(context.Message.RunId, 1, (_, n) => n + 1);
    }
}

[Collection(BrokerCollection.Name)]
public sealed class LongStepTests(BrokerFixture fixture)
{
    private static readonly TimeSpan ConsumerTimeout = TimeSpan.FromSeconds(4);

    private Dictionary<string, string?> Durable(string table) => new()
    {
        ["ConnectionStrings:runs"] = fixture.Storage.ConnectionString,
        ["Jobs:Durable:Table"] = table,
        ["Jobs:Durable:LeaseSeconds"] = "3",
        ["Jobs:Durable:PollSeconds"] = "0.5",
    };

    [Fact]
    public async Task A_durable_step_that_outlasts_the_consumer_timeout_completes_exactly_once()
    {
        await using var broker = await RabbitMqServer.StartAsync(ConsumerTimeout);
        var table = $"jobs{Guid.NewGuid():N}"[..20];
        var hosts = new List<IHost>();
        try
        {
            // Two worker instances compete for the durable step; one of them also holds the plain step's delivery.
            for (int i = 0; i < 2; i++)
            {
                int instance = i;
                hosts.Add(await fixture.StartWorkerAsync($"long-{i}", (_, bus) =>
                {
                    bus.AddDurableStep<SlowDurableConsumer, SlowDurableStep>("slow-durable-step");
                    if (instance != 0) return;
                    bus.AddConsumer<SlowPlainConsumer>().Endpoint(e => e.Name = "slow-plain-step");
                    bus.AddConsumer<Recorder<SlowStepDone>>().Endpoint(e => e.Name = "test-slow-step-done");
                }, Durable(table), broker));
            }
            var runId = Guid.NewGuid();
            var seconds = ConsumerTimeout.TotalSeconds * 3; // three timeouts long
            var bus = hosts[0].Services.GetRequiredService<IBus>();
            await bus.Publish(new SlowPlainStep(runId, seconds));
            await bus.Publish(new SlowDurableStep(runId, "slow-0123456789abcdef", seconds));

            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(seconds * 4);
            while (SlowDurableConsumer.Completed.GetValueOrDefault(runId) == 0 && DateTime.UtcNow < deadline) await Task.Delay(250);
            await Task.Delay(ConsumerTimeout * 2); // room for a duplicate to show up
            var plainStarts = SlowPlainConsumer.Started.GetValueOrDefault(runId);
            var durableStarts = SlowDurableConsumer.Started.GetValueOrDefault(runId);
            var durableDone = SlowDurableConsumer.Completed.GetValueOrDefault(runId);
            var jobs = new StepJobTable(new Azure.Data.Tables.TableServiceClient(fixture.Storage.ConnectionString).GetTableClient(table));
            var record = await jobs.GetAsync(nameof(SlowDurableStep), "slow-0123456789abcdef");
            Console.WriteLine($"step of {seconds} s, consumer timeout {ConsumerTimeout.TotalSeconds} s: durable started {durableStarts}, completed {durableDone}, " +
                              $"record {record}; held delivery started {plainStarts} times");

            // The control: the broker did cancel the held delivery and hand it out again.
            Assert.True(plainStarts >= 2, $"the held delivery started {plainStarts} time(s): the consumer timeout never fired, so this test proves nothing");
            // The durable step ran once, completed once, published its event once.
            Assert.Equal(1, durableStarts);
            Assert.Equal(1, durableDone);
            Assert.Equal(("Completed", 1), record);
            Assert.Single(Recorder<SlowStepDone>.Seen, d => d.RunId == runId && d.Kind == "durable");
        }
        finally
        {
            foreach (var host in hosts) { await host.StopAsync(); host.Dispose(); }
        }
    }

    [Fact]
    public async Task A_job_whose_worker_died_is_taken_over_after_its_lease_and_completes_once()
    {
        var table = $"jobs{Guid.NewGuid():N}"[..20];
        var jobs = new StepJobTable(new Azure.Data.Tables.TableServiceClient(fixture.Storage.ConnectionString).GetTableClient(table));
        var runId = Guid.NewGuid();
        const string key = "slow-fedcba9876543210";
        // A worker claimed the job and was killed: the record says Running, with a lease nobody renews.
        await jobs.EnqueueAsync(nameof(SlowDurableStep), key,
            System.Text.Json.JsonSerializer.Serialize(new SlowDurableStep(runId, key, 0.5), new System.Text.Json.JsonSerializerOptions(System.Text.Json.JsonSerializerDefaults.Web)),
            null, CancellationToken.None);
        var dead = await jobs.TryClaimAsync(nameof(SlowDurableStep), "killed-worker", TimeSpan.FromSeconds(3), CancellationToken.None);
        Assert.NotNull(dead);
        Assert.Null(await jobs.TryClaimAsync(nameof(SlowDurableStep), "other", TimeSpan.FromSeconds(3), CancellationToken.None)); // still leased

        using var host = await fixture.StartWorkerAsync("takeover", (_, bus) =>
        {
            bus.AddDurableStep<SlowDurableConsumer, SlowDurableStep>("slow-durable-step-takeover");
            bus.AddConsumer<Recorder<SlowStepDone>>().Endpoint(e => e.Name = "test-slow-step-done-takeover");
        }, Durable(table));
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (SlowDurableConsumer.Completed.GetValueOrDefault(runId) == 0 && DateTime.UtcNow < deadline) await Task.Delay(200);
        await Task.Delay(1500);
        Assert.Equal(1, SlowDurableConsumer.Started.GetValueOrDefault(runId));
        Assert.Equal(1, SlowDurableConsumer.Completed.GetValueOrDefault(runId));
        Assert.Equal(("Completed", 2), await jobs.GetAsync(nameof(SlowDurableStep), key)); // the second attempt did it

        // A duplicate delivery after completion runs the step again (a real step reuses its output) and republishes.
        await host.Services.GetRequiredService<IBus>().Publish(new SlowDurableStep(runId, key, 0.5));
        deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (Recorder<SlowStepDone>.Seen.Count(d => d.RunId == runId) < 2 && DateTime.UtcNow < deadline) await Task.Delay(200);
        Assert.Equal(2, Recorder<SlowStepDone>.Seen.Count(d => d.RunId == runId));
        await host.StopAsync();
    }
}
