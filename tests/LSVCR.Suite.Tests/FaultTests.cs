using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;
using Aspire.Hosting;
using Aspire.Hosting.ApplicationModel;
using Aspire.Hosting.Testing;
using Azure.Data.Tables;
using Azure.Storage.Blobs;
using LSVCR.Contracts;
using LSVCR.Orchestration.Messaging;
using MassTransit;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace LSVCR.Suite.Tests;

/// <summary>
/// Faults end to end on the AppHost: a FineTuning process killed with SIGKILL mid-training and started again, and a
/// broker restart mid-run. Each run must complete with one checkpoint set per task, nothing lost or left over, and one
/// completion event per step; the counts are printed for the record.
/// </summary>
[Collection(SuiteCollection.Name)]
public sealed class FaultTests(SuiteFixture suite)
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    [Fact]
    public async Task FineTuning_killed_mid_training_and_restarted_still_publishes_one_checkpoint_set_per_task()
    {
        using var events = await EventLog.StartAsync(suite);
        var runId = await StartRun(seed: 31, epochs: 4);

        // The job record names its claimant's process: kill that one while it trains.
        var (pid, key) = await RunningFineTuneJob(runId, TimeSpan.FromMinutes(10));
        await Task.Delay(TimeSpan.FromSeconds(2));
        var resource = await ResourceOf(pid);
        Process.GetProcessById(pid).Kill(); // SIGKILL
        var killedAt = DateTime.UtcNow;
        Console.WriteLine($"killed {resource} (pid {pid}) while it trained job {key}");
        await WaitForExit(pid);
        var restart = await suite.App.Services.GetRequiredService<ResourceCommandService>()
            .ExecuteCommandAsync(resource, KnownResourceCommands.StartCommand);
        Assert.True(restart.Success, $"restarting {resource}: {restart.Message}");

        var run = await WaitForEnd(runId, TimeSpan.FromMinutes(15));
        var counts = await Count(runId, run, events);
        Console.WriteLine($"SIGKILL fault: {counts}; run ended {(DateTime.UtcNow - killedAt).TotalSeconds:F0} s after the kill; steps {StepTimes(run)}");
        Assert.True(run["state"]!.GetValue<string>() == "Published", $"run ended {run["state"]}: {run["failureReason"]}");
        counts.AssertClean();
        Assert.True(await Attempts(key) >= 2, "the killed job was not run again");
    }

    [Fact]
    public async Task Broker_restart_mid_run_and_the_run_still_completes()
    {
        using var events = await EventLog.StartAsync(suite);
        var runId = await StartRun(seed: 32, epochs: 3);
        await RunningFineTuneJob(runId, TimeSpan.FromMinutes(10));
        var commands = suite.App.Services.GetRequiredService<ResourceCommandService>();
        var stopped = await commands.ExecuteCommandAsync("bus", KnownResourceCommands.StopCommand);
        Assert.True(stopped.Success, $"stopping the broker: {stopped.Message}");
        await Task.Delay(TimeSpan.FromSeconds(3));
        var started = await commands.ExecuteCommandAsync("bus", KnownResourceCommands.StartCommand);
        Assert.True(started.Success, $"starting the broker: {started.Message}");
        Console.WriteLine("broker stopped and started while fine-tuning ran");

        var run = await WaitForEnd(runId, TimeSpan.FromMinutes(15));
        var counts = await Count(runId, run, events);
        Console.WriteLine($"broker restart fault: {counts}; steps {StepTimes(run)}");
        Assert.True(run["state"]!.GetValue<string>() == "Published", $"run ended {run["state"]}: {run["failureReason"]}");
        counts.AssertClean(exactEvents: false);
    }

    private sealed record Counts(int RunsCompleted, int CheckpointSets, int Lost, int LeftOver, int FineTuningCompleted, int ModelPublished, int Tasks)
    {
        public override string ToString() =>
            $"runs completed {RunsCompleted}, checkpoint sets {CheckpointSets} for {Tasks} tasks, artifacts lost {Lost}, duplicated/left over {LeftOver}, " +
            $"FineTuningCompleted events {FineTuningCompleted}, ModelPublished events {ModelPublished}";

        /// <param name="exactEvents">True when no step could have published twice (a killed worker never published);
        /// a broker restart may make a worker publish again after a lost confirmation (at-least-once).</param>
        public void AssertClean(bool exactEvents = true)
        {
            Assert.Equal(1, RunsCompleted);
            Assert.Equal(Tasks, CheckpointSets);
            Assert.Equal(0, Lost);
            Assert.Equal(0, LeftOver);
            if (exactEvents)
            {
                Assert.Equal(Tasks, FineTuningCompleted);
                Assert.Equal(1, ModelPublished);
            }
            else
            {
                Assert.InRange(FineTuningCompleted, Tasks, 2 * Tasks);
                Assert.InRange(ModelPublished, 1, 2);
            }
        }
    }

    private async Task<Counts> Count(string runId, JsonNode run, EventLog events)
    {
        var container = new BlobServiceClient(suite.StorageConnection).GetBlobContainerClient("artifacts");
        int sets = 0, lost = 0, leftOver = 0;
        var id = Guid.Parse(runId);
        foreach (var task in new[] { "rec", "comm_rank" })
        {
            var set = $"runs/{id:N}/{task}";
            var names = new List<string>();
            await foreach (var blob in container.GetBlobsAsync(Azure.Storage.Blobs.Models.BlobTraits.None, Azure.Storage.Blobs.Models.BlobStates.None, set + "/", CancellationToken.None))
                names.Add(blob.Name);
            if (await suite.Store.TryGetManifestAsync(set) is not { } manifest) continue;
            sets++;
            var expected = manifest.Files.Select(f => manifest.StorePath(f.Path)).Append($"{set}/{LSVCR.Artifacts.ArtifactPaths.ManifestFile}").ToHashSet();
            lost += expected.Count(e => !names.Contains(e));
            leftOver += names.Count(n => !expected.Contains(n));
        }
        // The log's own bus may still be reconnecting after a broker restart (its durable queues hold the events): wait
        // for the least a completed run must have published, then a little longer for late duplicates.
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(90);
        while (DateTime.UtcNow < deadline &&
               (events.Count<FineTuningCompleted>(m => m.RunId == id) < 2 || events.Count<ModelPublished>(m => m.RunId == id) < 1))
            await Task.Delay(TimeSpan.FromMilliseconds(500));
        await Task.Delay(TimeSpan.FromSeconds(3));
        return new Counts(run["state"]!.GetValue<string>() == "Published" ? 1 : 0, sets, lost, leftOver,
            events.Count<FineTuningCompleted>(m => m.RunId == id), events.Count<ModelPublished>(m => m.RunId == id), 2);
    }

    /// <summary>Wall time per step as the run records it (start when the orchestrator asked, finish when it heard back).</summary>
    internal static string StepTimes(JsonNode run) => string.Join(", ", run["steps"]!.AsArray()
        .Select(s => $"{s!["name"]} {(s["seconds"]?.GetValue<double>() is { } t ? $"{t:F1} s" : s["status"]!.GetValue<string>())}"));

    private async Task<string> StartRun(int seed, int epochs)
    {
        var content = new ByteArrayContent(SuiteFixture.Zip(SuiteFixture.TinyDataset(seed: seed)));
        content.Headers.ContentType = new MediaTypeHeaderValue("application/zip");
        var dataset = await suite.Api.PostAsync("/v1/datasets", content);
        Assert.Equal(HttpStatusCode.Created, dataset.StatusCode);
        var datasetId = (await dataset.Content.ReadFromJsonAsync<JsonObject>())!["datasetId"]!.GetValue<string>();
        var started = await suite.Api.PostAsJsonAsync("/v1/runs", new
        {
            datasetId,
            options = new { fineTune = new { epochs }, gate = new { enabled = false } },
        });
        Assert.Equal(HttpStatusCode.Accepted, started.StatusCode);
        return (await started.Content.ReadFromJsonAsync<JsonObject>())!["runId"]!.GetValue<string>();
    }

    /// <summary>The process id and step key of a FineTune job of the run that an instance has claimed.</summary>
    private async Task<(int Pid, string Key)> RunningFineTuneJob(string runId, TimeSpan timeout)
    {
        var table = new TableServiceClient(suite.StorageConnection).GetTableClient("stepjobs");
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            try
            {
                await foreach (var job in table.QueryAsync<TableEntity>(e => e.PartitionKey == nameof(FineTune)))
                    if (job.GetString("Message").Contains(runId, StringComparison.OrdinalIgnoreCase)
                        && job.GetString("Status") == "Running" && job.GetString("Owner") is { Length: > 0 } owner)
                        return (int.Parse(owner.Split('-')[^2]), job.RowKey);
            }
            catch (Azure.RequestFailedException e) when (e.Status == 404) { } // no job recorded yet
            await Task.Delay(250);
        }
        throw new TimeoutException($"no FineTune job of run {runId} was claimed within {timeout}");
    }

    private async Task<int> Attempts(string key)
    {
        var table = new TableServiceClient(suite.StorageConnection).GetTableClient("stepjobs");
        return (await table.GetEntityAsync<TableEntity>(nameof(FineTune), key)).Value.GetInt32("Attempts") ?? 0;
    }

    /// <summary>The fine-tuning replica whose process is <paramref name="pid"/> (DCP starts each project through
    /// <c>dotnet run</c>, so the pid it reports may be the service's parent).</summary>
    private async Task<string> ResourceOf(int pid)
    {
        var lineage = new List<int>();
        for (int p = pid; p > 1 && lineage.Count < 4; p = ParentOf(p)) lineage.Add(p);
        var seen = new Dictionary<string, string>();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        try
        {
            await foreach (var e in suite.App.ResourceNotifications.WatchAsync(cts.Token))
            {
                var value = e.Snapshot.Properties.FirstOrDefault(p => p.Name == "executable.pid")?.Value?.ToString();
                seen[e.ResourceId] = value ?? "-";
                if (value is not null && int.TryParse(value, out var reported) && lineage.Contains(reported)) return e.ResourceId;
            }
        }
        catch (OperationCanceledException) { }
        throw new InvalidOperationException($"no resource runs pid {pid} (lineage {string.Join(" < ", lineage)}; resources: " +
                                            string.Join(", ", seen.Select(p => $"{p.Key}={p.Value}")) + ")");
    }

    private static int ParentOf(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            return int.Parse(stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[1]);
        }
        catch (IOException) { return 0; }
    }

    private static async Task WaitForExit(int pid)
    {
        for (int i = 0; i < 100; i++)
        {
            try { if (Process.GetProcessById(pid).HasExited) return; }
            catch (ArgumentException) { return; }
            await Task.Delay(100);
        }
    }

    private async Task<JsonNode> WaitForEnd(string runId, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var response = await suite.Api.GetAsync($"/v1/runs/{runId}");
            if (response.IsSuccessStatusCode)
            {
                var run = (await response.Content.ReadFromJsonAsync<JsonNode>())!;
                if (run["state"]!.GetValue<string>() is "Published" or "Failed") return run;
                if (DateTime.UtcNow > deadline) throw new TimeoutException($"run {runId} still {run["state"]} after {timeout}: {run.ToJsonString()}");
            }
            else if (DateTime.UtcNow > deadline) throw new TimeoutException($"run {runId}: {response.StatusCode} after {timeout}");
            await Task.Delay(1000);
        }
    }

    /// <summary>Every FineTuningCompleted and ModelPublished on the suite's bus, seen from queues of the test's own (durable,
    /// so that they keep their bindings and messages through a broker restart).</summary>
    internal sealed class EventLog : IDisposable
    {
        private static readonly ConcurrentQueue<object> Seen = new();
        private IHost host = null!;

        public static async Task<EventLog> StartAsync(SuiteFixture suite)
        {
            var bus = await suite.App.GetConnectionStringAsync("bus") ?? throw new InvalidOperationException("bus has no connection string");
            var builder = Host.CreateApplicationBuilder();
            builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?> { ["ConnectionStrings:bus"] = bus });
            builder.Services.AddLsvcrBus(builder.Configuration, x =>
            {
                x.AddConsumer<Recorder<FineTuningCompleted>>().Endpoint(e => e.Name = "test-fault-fine-tuning-completed");
                x.AddConsumer<Recorder<ModelPublished>>().Endpoint(e => e.Name = "test-fault-model-published");
            });
            var log = new EventLog { host = builder.Build() };
            await log.host.StartAsync();
            await log.host.Services.GetRequiredService<IBusControl>().WaitForHealthStatus(BusHealthStatus.Healthy, TimeSpan.FromSeconds(60));
            return log;
        }

        public int Count<T>(Func<T, bool> match) => Seen.OfType<T>().Count(match);

        public void Dispose()
        {
            host.StopAsync().GetAwaiter().GetResult();
            host.Dispose();
        }

        public sealed class Recorder<T> : IConsumer<T> where T : class
        {
            public Task Consume(ConsumeContext<T> context)
            {
                Seen.Enqueue(context.Message);
                return Task.CompletedTask;
            }
        }
    }
}
