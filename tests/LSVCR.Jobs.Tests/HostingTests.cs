using LSVCR.Artifacts;
using LSVCR.Data;
using LSVCR.TestServers;
using Microsoft.Extensions.DependencyInjection;

namespace LSVCR.Jobs.Tests;

[Collection(JobsCollection.Name)]
public sealed class HostingTests(JobsFixture fixture)
{
    [Fact]
    public async Task A_second_model_job_in_the_same_process_is_refused_while_one_runs()
    {
        var trained = await fixture.Trained;  // before the gate is taken
        using var firstBatch = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        var blocking = new SyncProgress(p =>
        {
            if (!p.Stage.StartsWith("train", StringComparison.Ordinal) || firstBatch.IsSet) return;
            firstBatch.Set();
            release.Wait(TimeSpan.FromMinutes(2));
        });
        var job = fixture.Services.GetRequiredService<FineTuningJobService>();
        var training = job.RunAsync(new FineTuningJobRequest(fixture.Dataset, fixture.Embeddings, TaskKind.Rec, "runs/gate/rec")
        {
            Training = JobsFixture.Training with { Epochs = 1 },
        }, blocking);
        Assert.True(firstBatch.Wait(TimeSpan.FromMinutes(2)), "training did not start");
        try
        {
            var refused = await Assert.ThrowsAsync<LsvcrException>(() => fixture.Services.GetRequiredService<EvaluationJobService>()
                .RunAsync(new EvaluationJobRequest(fixture.Dataset, fixture.Embeddings, trained.Job.Output, "runs/gate/report")));
            Assert.Equal(ErrorKind.Transient, refused.Kind);
            Assert.Contains("one at a time", refused.Message);
            Assert.Null(await fixture.Store.TryGetManifestAsync("runs/gate/report"));
        }
        finally
        {
            release.Set();
        }
        Assert.False((await training).Job.Reused);
    }

    [Fact]
    public async Task Fine_tuning_reads_and_publishes_through_blob_storage_on_a_real_Azurite()
    {
        await using var azurite = await AzuriteServer.StartAsync();
        await using var services = JobsFixture.Build(new()
        {
            ["ConnectionStrings:artifacts"] = azurite.ConnectionString,
            ["Artifacts:CacheDirectory"] = Path.Combine(fixture.Root, "blob-cache"),
            ["Jobs:WorkDirectory"] = Path.Combine(fixture.Root, "blob-work"),
        });
        var store = services.GetRequiredService<IArtifactStore>();
        Assert.Equal("azure-blob", store.Name);
        var local = await fixture.Store.OpenAsync(fixture.Dataset);
        var dataset = await store.PublishDirectoryAsync("datasets/tiny", "dataset", local.Directory);
        var embeddings = await store.PublishDirectoryAsync("embeddings/tiny/random", "embeddings", (await fixture.Store.OpenAsync(fixture.Embeddings)).Directory);
        // Content hashes do not depend on the store: the step key is the same in the embedded and the distributed mode.
        Assert.Equal(fixture.Dataset.ContentSha256, dataset.ContentSha256);

        var job = services.GetRequiredService<FineTuningJobService>();
        var request = new FineTuningJobRequest(dataset, embeddings, TaskKind.Rec, "runs/blob/rec") { Training = JobsFixture.Training with { Epochs = 1 } };
        Assert.Equal(fixture.Services.GetRequiredService<FineTuningJobService>().StepKey(request with { Dataset = fixture.Dataset, Embeddings = fixture.Embeddings }),
            job.StepKey(request));
        var result = await job.RunAsync(request);

        Assert.Equal("azure-blob", result.Job.Output.Store);
        var fresh = new BlobArtifactStore(azurite.ConnectionString, "artifacts", new ArtifactCache(Path.Combine(fixture.Root, "blob-cache-2")));
        var opened = await fresh.OpenAsync(result.Job.Output);
        Assert.True(new FileInfo(opened.PathOf("best/model.safetensors")).Length > 10_000);
        Assert.Equal(1, System.Text.Json.JsonDocument.Parse(await File.ReadAllTextAsync(opened.PathOf("history.json"))).RootElement.GetProperty("epochs").GetArrayLength());
    }
}
