using System.Collections.Concurrent;
using LSVCR.Orchestration.Messaging;
using LSVCR.TestServers;
using MassTransit;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace LSVCR.Steps.Tests;

/// <summary>A real RabbitMQ node and a real Azurite, shared by the tests of one collection.</summary>
public sealed class BrokerFixture : IAsyncLifetime
{
    public RabbitMqServer Broker { get; private set; } = null!;
    public AzuriteServer Storage { get; private set; } = null!;
    public string Root { get; } = Directory.CreateTempSubdirectory("lsvcr-steps-test-").FullName;

    public async Task InitializeAsync()
    {
        Storage = await AzuriteServer.StartAsync();
        Broker = await RabbitMqServer.StartAsync();
    }

    public async Task DisposeAsync()
    {
        await Broker.DisposeAsync();
        await Storage.DisposeAsync();
        try { Directory.Delete(Root, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    /// <summary>
    /// One worker as a service host runs it: the step registrations and consumers <paramref name="configure"/> adds, on
    /// the real broker and store, with a work folder and download cache of its own (as on its own machine).
    /// </summary>
    public async Task<IHost> StartWorkerAsync(string name, Action<HostApplicationBuilder, IBusRegistrationConfigurator> configure,
        Dictionary<string, string?>? settings = null, RabbitMqServer? broker = null)
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["ConnectionStrings:bus"] = (broker ?? Broker).ConnectionString,
            ["ConnectionStrings:artifacts"] = Storage.ConnectionString,
            ["Artifacts:CacheDirectory"] = Path.Combine(Root, name, "cache"),
            ["Jobs:WorkDirectory"] = Path.Combine(Root, name, "work"),
        });
        if (settings is not null) builder.Configuration.AddInMemoryCollection(settings);
        builder.Services.AddLsvcrBus(builder.Configuration, bus => configure(builder, bus));
        var host = builder.Build();
        await host.StartAsync();
        // The bus is up once its endpoints are bound (published messages reach their queues from then on).
        var bus = host.Services.GetRequiredService<IBusControl>();
        await bus.WaitForHealthStatus(BusHealthStatus.Healthy, TimeSpan.FromSeconds(60));
        return host;
    }
}

[CollectionDefinition(Name)]
public sealed class BrokerCollection : ICollectionFixture<BrokerFixture>
{
    public const string Name = "broker";
}

/// <summary>Counts the messages of each type a worker consumed (one per worker: who took what).</summary>
public sealed class ConsumeCounter : IConsumeObserver
{
    private readonly ConcurrentDictionary<Type, int> counts = new();

    public int Of<T>() => counts.GetValueOrDefault(typeof(T));

    public Task PreConsume<T>(ConsumeContext<T> context) where T : class => Task.CompletedTask;

    public Task PostConsume<T>(ConsumeContext<T> context) where T : class
    {
        counts.AddOrUpdate(typeof(T), 1, (_, n) => n + 1);
        return Task.CompletedTask;
    }

    public Task ConsumeFault<T>(ConsumeContext<T> context, Exception exception) where T : class => Task.CompletedTask;
}

/// <summary>Collects every message of type <typeparamref name="T"/> published on the bus (a queue of the test's own).</summary>
public sealed class Recorder<T> : IConsumer<T> where T : class
{
    public static readonly ConcurrentQueue<T> Seen = new();

    public Task Consume(ConsumeContext<T> context)
    {
        Seen.Enqueue(context.Message);
        return Task.CompletedTask;
    }
}
