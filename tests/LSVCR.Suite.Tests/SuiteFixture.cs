using System.IO.Compression;
using Aspire.Hosting;
using Aspire.Hosting.ApplicationModel;
using Aspire.Hosting.Testing;
using LSVCR.Artifacts;
using LSVCR.Data;

namespace LSVCR.Suite.Tests;

/// <summary>
/// The whole suite as developers start it: LSVCR.AppHost with its real RabbitMQ and Azurite executables and every
/// service, on a data folder of its own, the Runs API on a free port, no dashboard.
/// </summary>
public sealed class SuiteFixture : IAsyncLifetime
{
    private readonly string localData = Directory.CreateTempSubdirectory("lsvcr-suite-").FullName;
    private DistributedApplication? app;

    public HttpClient Api { get; private set; } = null!;
    public DistributedApplication App => app ?? throw new InvalidOperationException("the suite is not started");
    /// <summary>The AppHost's Serving service (ready only once a published model is live).</summary>
    public HttpClient Serving { get; private set; } = null!;
    public IArtifactStore Store { get; private set; } = null!;
    public string StorageConnection { get; private set; } = "";

    public async Task InitializeAsync()
    {
        // The test runs as root: the broker's data folder must be reachable by the rabbitmq user it drops to.
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(localData, (UnixFileMode)0b111_101_101);
        var builder = await DistributedApplicationTestingBuilder.CreateAsync<Projects.LSVCR_AppHost>(
            [$"--LocalData={localData}", "--RunsApiPort=0", "--ServingPort=0", "--FineTuningReplicas=2", "--AlignmentExamples=8"],
            (options, _) => options.DisableDashboard = true);
        // A short lease: the fault tests kill a FineTuning process, and its job is taken over once the lease runs out.
        builder.CreateResourceBuilder<ProjectResource>("fine-tuning").WithEnvironment("Jobs__Durable__LeaseSeconds", "6");
        app = await builder.BuildAsync();
        // Seven projects and two servers start here; a loaded 2-core machine has needed more than 5 minutes.
        using var startup = new CancellationTokenSource(TimeSpan.FromMinutes(10));
        await app.StartAsync(startup.Token);
        foreach (var service in new[] { "runs-api", "embeddings", "alignment", "evaluation" })
            await app.ResourceNotifications.WaitForResourceHealthyAsync(service, startup.Token);
        await app.ResourceNotifications.WaitForResourceAsync("serving", KnownResourceStates.Running, startup.Token);
        Api = app.CreateHttpClient("runs-api");
        Serving = app.CreateHttpClient("serving");
        StorageConnection = await app.GetConnectionStringAsync("storage", startup.Token)
                            ?? throw new InvalidOperationException("storage has no connection string");
        Store = ArtifactStores.Create(new ArtifactStoreOptions
        {
            ConnectionString = StorageConnection,
            CacheDirectory = Path.Combine(localData, "test-cache"),
        });
    }

    public async Task DisposeAsync()
    {
        Api?.Dispose();
        Serving?.Dispose();
        if (app is not null)
        {
            await app.StopAsync();
            await app.DisposeAsync();
        }
        try { Directory.Delete(localData, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    /// <summary>A tiny synthetic dataset in the reference layout, in a fresh folder.</summary>
    public static string TinyDataset(int users = 40, int seed = 11)
    {
        var dir = Directory.CreateTempSubdirectory("lsvcr-tiny-").FullName;
        ReferenceLayout.Write(SyntheticDataset.Generate(new SynthOptions { Users = users, Videos = 64, Seed = seed }), dir);
        return dir;
    }

    /// <summary>The folder as a zip; the folder is removed.</summary>
    public static byte[] Zip(string dir)
    {
        using var buffer = new MemoryStream();
        ZipFile.CreateFromDirectory(dir, buffer);
        Directory.Delete(dir, recursive: true);
        return buffer.ToArray();
    }
}

[CollectionDefinition(Name)]
public sealed class SuiteCollection : ICollectionFixture<SuiteFixture>
{
    public const string Name = "suite";
}
