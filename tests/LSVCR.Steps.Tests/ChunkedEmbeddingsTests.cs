using System.Diagnostics.Metrics;
using Azure.Storage.Blobs;
using LSVCR.Artifacts;
using LSVCR.Contracts;
using LSVCR.Data;
using LSVCR.Embeddings;
using LSVCR.Jobs;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace LSVCR.Steps.Tests;

[Collection(BrokerCollection.Name)]
public sealed class ChunkedEmbeddingsTests(BrokerFixture fixture)
{
    [Fact]
    public async Task Two_Embeddings_instances_share_the_chunks_and_assemble_the_single_process_arrays_exactly_once()
    {
        var data = SyntheticDataset.Generate(new SynthOptions { Users = 20, Videos = 24, Topics = 4, MinLikes = 5, MaxLikes = 8, CommentsPerVideo = 6, Seed = 21 });
        var dataDir = Path.Combine(fixture.Root, "dataset");
        ReferenceLayout.Write(data, dataDir);
        var options = new PipelineRunOptions { EmbeddingChunkSize = 32 };

        // The single-process job (lsvcr embed) on the same texts and settings: the arrays the chunks must add up to.
        var single = Path.Combine(fixture.Root, "single");
        var expected = await EmbeddingJob.RunAsync(data.Catalog, single, new EmbedOptions { ChunkSize = options.EmbeddingChunkSize, Threads = 1 });
        Assert.True(expected.Chunks >= 4, $"the test wants several chunks, the plan has {expected.Chunks}");

        using var runs = new JobRunsListener();
        var counters = new[] { new ConsumeCounter(), new ConsumeCounter() };
        var hosts = new List<IHost>();
        try
        {
            for (int i = 0; i < 2; i++)
            {
                var counter = counters[i];
                hosts.Add(await fixture.StartWorkerAsync($"embeddings-{i}", (host, bus) =>
                {
                    host.Services.AddEmbeddingSteps(host.Configuration);
                    host.Services.AddConsumeObserver(_ => counter);
                    bus.AddEmbeddingConsumers();
                }, new() { ["Jobs:Embeddings:Embed:Threads"] = "1" }));
            }
            var observer = await fixture.StartWorkerAsync("observer", (_, bus) =>
            {
                bus.AddConsumer<Recorder<EmbeddingsComputed>>().Endpoint(e => e.Name = "test-embeddings-computed");
                bus.AddConsumer<Recorder<ComputeEmbeddingChunk>>().Endpoint(e => e.Name = "test-compute-embedding-chunk");
                bus.AddConsumer<Recorder<EmbeddingChunkComputed>>().Endpoint(e => e.Name = "test-embedding-chunk-computed");
            });
            hosts.Add(observer);

            var store = hosts[0].Services.GetRequiredService<IArtifactStore>();
            var dataset = new DatasetReference("chunked", await store.PublishDirectoryAsync("datasets/chunked", "dataset", dataDir));
            var runId = Guid.NewGuid();
            var publish = observer.Services.GetRequiredService<IBus>();
            await publish.Publish(new ComputeEmbeddings(runId, "embeddings-test", dataset, options));

            var computed = await Until(() => Recorder<EmbeddingsComputed>.Seen.FirstOrDefault(e => e.RunId == runId), TimeSpan.FromMinutes(3));
            var chunkCommands = Recorder<ComputeEmbeddingChunk>.Seen.Where(c => c.RunId == runId).ToList();
            Assert.Equal(expected.Chunks, chunkCommands.Count);
            Assert.Equal(Enumerable.Range(0, expected.Chunks), chunkCommands.Select(c => c.Chunk).Order());

            // Competing consumers: both instances took chunks, and every chunk was taken once.
            var taken = counters.Select(c => c.Of<ComputeEmbeddingChunk>()).ToArray();
            Console.WriteLine($"chunks: {expected.Chunks}, taken by instance 0: {taken[0]}, by instance 1: {taken[1]}");
            Assert.All(taken, n => Assert.True(n > 0, $"an instance took no chunk ({string.Join(", ", taken)})"));
            Assert.Equal(expected.Chunks, taken.Sum());

            // The assembled arrays are the single-process arrays, byte for byte.
            var output = await store.OpenAsync(computed.Embeddings);
            foreach (var file in new[] { EmbeddingManifest.PhotoFile, EmbeddingManifest.CommentFile })
                Assert.Equal(await File.ReadAllBytesAsync(Path.Combine(single, file)), await File.ReadAllBytesAsync(output.PathOf(file)));
            Assert.Equal(expected.DatasetHash, EmbeddingManifest.Read(output.Directory).DatasetHash);
            Assert.Equal(expected.Chunks, runs.Count(EmbeddingsJobService.ChunkStep, "completed"));
            Assert.Equal(1, runs.Count(EmbeddingsJobService.Step, "completed"));
            // The work sets are gone once the output is published: only the dataset and the embeddings remain.
            var blobs = await Blobs();
            Assert.DoesNotContain(blobs.Keys, b => b.StartsWith("embedding-work/", StringComparison.Ordinal));

            // A chunk delivered again does nothing new: no blob written, no chunk encoded, the same result republished.
            await publish.Publish(chunkCommands[1]);
            await Until(() => Recorder<EmbeddingsComputed>.Seen.Count(e => e.RunId == runId) >= 2 ? "again" : null, TimeSpan.FromMinutes(1));
            Assert.All(Recorder<EmbeddingsComputed>.Seen.Where(e => e.RunId == runId), e => Assert.Equal(computed.Embeddings, e.Embeddings));
            Assert.Equal(blobs, await Blobs());
            Assert.Equal(expected.Chunks, runs.Count(EmbeddingsJobService.ChunkStep, "completed"));
            Assert.Equal(1, runs.Count(EmbeddingsJobService.Step, "completed"));
        }
        finally
        {
            foreach (var host in hosts) { await host.StopAsync(); host.Dispose(); }
        }
    }

    [Fact]
    public async Task A_chunk_delivered_twice_before_assembly_is_encoded_once()
    {
        var data = SyntheticDataset.Generate(new SynthOptions { Users = 20, Videos = 16, Topics = 4, MinLikes = 5, MaxLikes = 8, CommentsPerVideo = 4, Seed = 22 });
        var dataDir = Path.Combine(fixture.Root, "dataset-twice");
        ReferenceLayout.Write(data, dataDir);
        using var runs = new JobRunsListener();
        using var host = await fixture.StartWorkerAsync("embeddings-twice", (host, bus) =>
        {
            host.Services.AddEmbeddingSteps(host.Configuration);
            bus.AddConsumer<Recorder<EmbeddingChunkComputed>>().Endpoint(e => e.Name = "test-embedding-chunk-computed-twice");
        }, new() { ["Jobs:Embeddings:Embed:Threads"] = "1" });
        var job = host.Services.GetRequiredService<EmbeddingsJobService>();
        var store = host.Services.GetRequiredService<IArtifactStore>();
        var dataset = new DatasetReference("twice", await store.PublishDirectoryAsync("datasets/twice", "dataset", dataDir));
        var options = new PipelineRunOptions { EmbeddingChunkSize = 16 };
        var request = EmbeddingRequests.For(dataset, options);
        var plan = await job.PlanChunksAsync(request);
        Assert.True(plan.Chunks >= 2);
        Assert.Equal(plan, await job.PlanChunksAsync(request)); // planning again finds the same plan

        var first = await job.ComputeChunkAsync(request, plan, 0);
        var blobs = await Blobs();
        var again = await job.ComputeChunkAsync(request, plan, 0);
        Assert.False(first.Reused);
        Assert.True(again.Reused);
        Assert.Equal(first.Output, again.Output);
        Assert.Equal(blobs, await Blobs());
        Assert.Equal(1, runs.Count(EmbeddingsJobService.ChunkStep, "completed"));
        Assert.Equal(1, await job.CountChunksAsync(request, plan));
        Assert.Null(await job.TryAssembleAsync(request, plan)); // chunks missing: nothing published
        Assert.Null(await job.TryGetOutputAsync(request));
        await host.StopAsync();
    }

    private async Task<Dictionary<string, string>> Blobs()
    {
        var container = new BlobServiceClient(fixture.Storage.ConnectionString).GetBlobContainerClient("artifacts");
        var blobs = new Dictionary<string, string>();
        await foreach (var blob in container.GetBlobsAsync()) blobs[blob.Name] = blob.Properties.ETag.ToString()!;
        return blobs;
    }

    private static async Task<T> Until<T>(Func<T?> probe, TimeSpan timeout) where T : class
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            if (probe() is { } value) return value;
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"nothing after {timeout}");
            await Task.Delay(200);
        }
    }
}

/// <summary>Counts the jobs' <c>lsvcr.job.runs</c> measurements by step and outcome (every job in this process).</summary>
public sealed class JobRunsListener : IDisposable
{
    private readonly MeterListener listener = new();
    private readonly Dictionary<(string, string), long> counts = [];

    public JobRunsListener()
    {
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == JobTelemetry.Embeddings && instrument.Name == "lsvcr.job.runs") l.EnableMeasurementEvents(instrument);
        };
        listener.SetMeasurementEventCallback<long>((_, value, tags, _) =>
        {
            string step = "", outcome = "";
            foreach (var tag in tags)
            {
                if (tag.Key == "step") step = (string)tag.Value!;
                if (tag.Key == "outcome") outcome = (string)tag.Value!;
            }
            lock (counts) counts[(step, outcome)] = counts.GetValueOrDefault((step, outcome)) + value;
        });
        listener.Start();
    }

    public long Count(string step, string outcome)
    {
        lock (counts) return counts.GetValueOrDefault((step, outcome));
    }

    public void Dispose() => listener.Dispose();
}
