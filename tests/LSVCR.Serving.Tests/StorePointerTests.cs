using System.Net;
using LSVCR.Artifacts;
using LSVCR.TestServers;

namespace LSVCR.Serving.Tests;

/// <summary>
/// The artifact store's bundle pointer against a real Azurite: the pointer only names visible sets and is replaced
/// whole; a service started after a model was published (no bus, bundle root polled only at start) finds it through the
/// pointer and swaps to it; a pointer moved to a bundle that fails to verify leaves the model serving and is reported.
/// </summary>
public sealed class StorePointerTests(BundlesFixture bundles) : IClassFixture<BundlesFixture>
{
    [Fact]
    public async Task A_service_started_after_the_publish_finds_the_bundle_through_the_store_pointer_and_a_bad_one_keeps_the_model()
    {
        await using var azurite = await AzuriteServer.StartAsync();
        var container = "serving-" + Guid.NewGuid().ToString("N")[..8];
        var cache = Path.Combine(bundles.Dir.Path, "cache-" + Guid.NewGuid().ToString("N")[..8]);
        var store = ArtifactStores.Create(new ArtifactStoreOptions { ConnectionString = azurite.ConnectionString, Container = container, CacheDirectory = cache });
        Assert.IsType<BlobArtifactStore>(store);
        Assert.Null(await ServingBundlePointer.TryReadAsync(store));

        // The publish step: the bundle set first, then the pointer at it.
        var goodRef = await store.PublishDirectoryAsync("runs/b/bundle", "serving-bundle", bundles.B.BundleDir);
        await ServingBundlePointer.WriteAsync(store, goodRef, bundles.B.Manifest.ModelVersion);
        var read = await ServingBundlePointer.TryReadAsync(store);
        Assert.Equal((goodRef, bundles.B.Manifest.ModelVersion), read);

        // A set that is not (or no longer) visible cannot be pointed at, and the pointer stays as it was.
        var missing = goodRef with { Set = "runs/never/bundle" };
        await Assert.ThrowsAsync<ArtifactNotFoundException>(() => ServingBundlePointer.WriteAsync(store, missing, "0000"));
        Assert.Equal(goodRef, (await ServingBundlePointer.TryReadAsync(store))!.Value.Bundle);

        // Bundle a with a file that no longer matches its bundle manifest (the store's hashes are of the tampered bytes).
        var tampered = Path.Combine(bundles.Dir.Path, "tampered-" + Guid.NewGuid().ToString("N")[..8]);
        BundlesFixture.Copy(bundles.A.BundleDir, tampered);
        var popularity = Path.Combine(tampered, BundleFiles.Popularity);
        File.WriteAllText(popularity, File.ReadAllText(popularity).Replace("\"counts\"", "\"counts\" "));
        var badRef = await store.PublishDirectoryAsync("runs/bad/bundle", "serving-bundle", tampered);

        var root = bundles.NewRoot(bundles.A);
        await using var factory = new ServingFactory(root, new Dictionary<string, string?>
        {
            ["ConnectionStrings:artifacts"] = azurite.ConnectionString,
            ["Artifacts:Container"] = container,
            ["Artifacts:CacheDirectory"] = Path.Combine(bundles.Dir.Path, "service-cache-" + Guid.NewGuid().ToString("N")[..8]),
            ["Serving:PollInterval"] = "01:00:00",
            ["Serving:StorePollInterval"] = "00:00:00.200",
        });
        var client = await factory.ReadyClientAsync();
        await Until(async () => await Version(client) == bundles.B.Manifest.ModelVersion, "b to be live through the pointer");
        var answer = await client.PostJsonAsync("/v1/recommendations/videos", new { video_history = new[] { bundles.B.Catalog.PhotoIds[3] }, k = 3 });
        Assert.Equal(HttpStatusCode.OK, answer.StatusCode);
        Assert.Equal(bundles.B.Manifest.ModelVersion, answer.Headers.GetValues("X-Model-Version").Single());
        Assert.True(File.Exists(Path.Combine(root, bundles.B.Manifest.ModelVersion, BundleManifest.FileName)), "b was not installed into the bundle root");

        await ServingBundlePointer.WriteAsync(store, badRef, bundles.A.Manifest.ModelVersion);
        string? error = null;
        await Until(async () => (error = (await (await client.GetAsync("/v1/model")).BodyAsync())["last_error"]?.GetValue<string>()) is not null, "the bad bundle to be reported");
        Assert.Contains(BundleFiles.Popularity, error);
        // Several polls later the bad target has not been retried into a swap, and b still answers.
        await Task.Delay(1000);
        Assert.Equal(bundles.B.Manifest.ModelVersion, await Version(client));
        var still = await client.PostJsonAsync("/v1/recommendations/videos", new { video_history = new[] { bundles.B.Catalog.PhotoIds[3] }, k = 3 });
        Assert.Equal(HttpStatusCode.OK, still.StatusCode);
        Assert.Equal(bundles.B.Manifest.ModelVersion, still.Headers.GetValues("X-Model-Version").Single());
    }

    [Fact]
    public async Task A_local_store_pointer_is_replaced_whole_and_refuses_an_unpublished_set()
    {
        var store = new LocalArtifactStore(Path.Combine(bundles.Dir.Path, "local-store-" + Guid.NewGuid().ToString("N")[..8]));
        var a = await store.PublishDirectoryAsync("runs/a/bundle", "serving-bundle", bundles.A.BundleDir);
        var b = await store.PublishDirectoryAsync("runs/b/bundle", "serving-bundle", bundles.B.BundleDir);
        await ServingBundlePointer.WriteAsync(store, a, bundles.A.Manifest.ModelVersion);
        await ServingBundlePointer.WriteAsync(store, b, bundles.B.Manifest.ModelVersion);
        Assert.Equal((b, bundles.B.Manifest.ModelVersion), await ServingBundlePointer.TryReadAsync(store));
        Assert.Empty(Directory.GetFiles(Path.Combine(store.Root, ArtifactPaths.PointersFolder, "serving"), "*.tmp"));

        // A reference whose content differs from the set's (deleted and published again) is refused.
        await Assert.ThrowsAsync<ArtifactNotFoundException>(() => ServingBundlePointer.WriteAsync(store, a with { ContentSha256 = b.ContentSha256 }, "x"));
        await Assert.ThrowsAsync<LsvcrException>(() => ServingBundlePointer.WriteAsync(store, a, " "));
        Assert.Equal((b, bundles.B.Manifest.ModelVersion), await ServingBundlePointer.TryReadAsync(store));
        Assert.Null(await ServingBundlePointer.TryReadAsync(store, "serving/other"));
    }

    private static async Task<string> Version(HttpClient client) =>
        (await (await client.GetAsync("/v1/model")).BodyAsync())["model_version"]!.GetValue<string>();

    private static async Task Until(Func<Task<bool>> condition, string what)
    {
        for (var deadline = DateTime.UtcNow.AddSeconds(60); DateTime.UtcNow < deadline; await Task.Delay(200))
            if (await condition()) return;
        throw new TimeoutException($"waited 60 s for {what}");
    }
}
