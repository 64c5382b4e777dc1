using System.Text;
using LSVCR.Artifacts;
using LSVCR.Serving;
using Microsoft.Extensions.DependencyInjection;

namespace LSVCR.Jobs.Tests;

[Collection(JobsCollection.Name)]
public sealed class ServingBundleJobTests(JobsFixture fixture)
{
    private ServingBundleJobService Job => fixture.Services.GetRequiredService<ServingBundleJobService>();

    private async Task<ServingBundleRequest> RequestAsync(string set, string note)
    {
        var rec = await fixture.Trained;
        var commRank = await fixture.Services.GetRequiredService<FineTuningJobService>().RunAsync(
            new FineTuningJobRequest(fixture.Dataset, fixture.Embeddings, TaskKind.CommRank, "runs/bundle/comm_rank") { Training = JobsFixture.Training with { Epochs = 1 } });
        return new ServingBundleRequest("run-1", fixture.Dataset, fixture.Embeddings, rec.Job.Output, commRank.Job.Output, set,
            new Dictionary<string, byte[]> { ["bundle.json"] = Encoding.UTF8.GetBytes(note) });
    }

    [Fact]
    public async Task Publishes_a_verified_bundle_under_its_step_key_and_a_redelivery_reuses_it_without_writing()
    {
        var request = await RequestAsync("runs/bundle/bundle", "{\"run\":1}");
        var first = await Job.PublishAsync(request);

        Assert.False(first.Reused);
        var manifest = await fixture.Store.GetManifestAsync(first.Bundle);
        Assert.Equal(ServingBundleJobService.ArtifactKind, manifest.Kind);
        Assert.Equal(ServingBundleJobService.StepKey(request), manifest.Metadata[StepRunner.StepKeyMetadata]);
        Assert.Equal(first.StepKey, manifest.Metadata[StepRunner.StepKeyMetadata]);
        Assert.Equal(ServingBundleJobService.Step, manifest.Metadata[StepRunner.StepMetadata]);
        // The set's model version is the one the bundle's own manifest derives from its files, and the bundle verifies.
        var opened = await fixture.Store.OpenAsync(first.Bundle);
        var bundle = BundleManifest.Read(opened.Directory);
        bundle.Verify(opened.Directory);
        Assert.Equal(bundle.ModelVersion, first.ModelVersion);
        Assert.Equal(first.ModelVersion, manifest.Metadata[ServingBundleJobService.VersionKey]);
        Assert.Equal("run-1", bundle.TrainingRun);
        Assert.Equal("{\"run\":1}", await File.ReadAllTextAsync(opened.PathOf("bundle.json")));
        Assert.Contains(manifest.Files, f => f.Path == BundleManifest.FileName);
        // The store's serving/latest pointer names it (Serving's fallback to ModelPublished).
        Assert.Equal((first.Bundle, first.ModelVersion), await ServingBundlePointer.TryReadAsync(fixture.Store));

        var storeDir = Path.Combine(fixture.Root, "store", "runs", "bundle", "bundle");
        var before = Directory.GetFiles(storeDir, "*", SearchOption.AllDirectories).Order().ToList();
        var again = await Job.PublishAsync(request);
        Assert.True(again.Reused);
        Assert.Equal(first.Bundle, again.Bundle);
        Assert.Equal(first.ModelVersion, again.ModelVersion);
        Assert.Equal(before, Directory.GetFiles(storeDir, "*", SearchOption.AllDirectories).Order().ToList());
        Assert.False(Directory.Exists(Path.Combine(fixture.WorkDirectory, ServingBundleJobService.Step, first.StepKey[..32])));
    }

    [Fact]
    public async Task A_redelivered_older_publish_leaves_the_pointer_on_the_newer_bundle_and_a_lost_pointer_is_restored()
    {
        var older = await Job.PublishAsync(await RequestAsync("runs/pointer/old", "{\"run\":\"old\"}"));
        var newer = await Job.PublishAsync(await RequestAsync("runs/pointer/new", "{\"run\":\"new\"}"));
        Assert.NotEqual(older.Bundle, newer.Bundle);
        Assert.Equal(newer.Bundle, (await ServingBundlePointer.TryReadAsync(fixture.Store))!.Value.Bundle);

        var again = await Job.PublishAsync(await RequestAsync("runs/pointer/old", "{\"run\":\"old\"}"));
        Assert.True(again.Reused);
        Assert.Equal(newer.Bundle, (await ServingBundlePointer.TryReadAsync(fixture.Store))!.Value.Bundle);

        // A publish killed after its set became visible but before the pointer: the redelivery sets it.
        File.Delete(Path.Combine(fixture.Root, "store", ArtifactPaths.PointersFolder, "serving", "latest.json"));
        Assert.Null(await ServingBundlePointer.TryReadAsync(fixture.Store));
        await Job.PublishAsync(await RequestAsync("runs/pointer/old", "{\"run\":\"old\"}"));
        Assert.Equal((older.Bundle, older.ModelVersion), await ServingBundlePointer.TryReadAsync(fixture.Store));
    }

    [Fact]
    public async Task A_set_published_from_other_inputs_under_the_same_id_is_refused()
    {
        var request = await RequestAsync("runs/bundle/other", "{\"run\":1}");
        await Job.PublishAsync(request);

        var changed = request with { ExtraFiles = new Dictionary<string, byte[]> { ["bundle.json"] = Encoding.UTF8.GetBytes("{\"run\":2}") } };
        Assert.NotEqual(ServingBundleJobService.StepKey(request), ServingBundleJobService.StepKey(changed));
        var error = await Assert.ThrowsAsync<LsvcrException>(() => Job.PublishAsync(changed));
        Assert.Contains("runs/bundle/other already holds the output of another step", error.Message);
    }

    [Fact]
    public async Task An_extra_file_may_not_replace_a_file_of_the_bundle()
    {
        var request = await RequestAsync("runs/bundle/clash", "{}");
        var clash = request with { ExtraFiles = new Dictionary<string, byte[]> { [BundleManifest.FileName] = [1, 2, 3] } };
        var error = await Assert.ThrowsAsync<LsvcrException>(() => Job.PublishAsync(clash));
        Assert.Contains("'manifest.json' would replace the bundle's own file", error.Message);
        Assert.Null(await fixture.Store.TryGetManifestAsync("runs/bundle/clash"));
    }
}
