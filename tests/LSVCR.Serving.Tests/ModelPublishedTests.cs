using System.Net;
using LSVCR.Artifacts;
using LSVCR.Contracts;
using LSVCR.TestServers;
using MassTransit;

namespace LSVCR.Serving.Tests;

/// <summary>
/// The ModelPublished consumer against a real RabbitMQ node and a real (folder) artifact store: a running service
/// serving bundle a receives ModelPublished for bundle b, downloads the set, swaps and answers with b; then a
/// ModelPublished for a tampered copy of a leaves b serving and reports the failure. The bundle root is polled only at
/// start (interval 1 h), so the swap is the consumer's doing.
/// </summary>
public sealed class ModelPublishedTests(BundlesFixture bundles) : IClassFixture<BundlesFixture>
{
    [Fact]
    public async Task ModelPublished_makes_a_running_service_download_and_swap_and_a_bad_bundle_keeps_the_model()
    {
        await using var rabbit = await RabbitMqServer.StartAsync();
        var storeDir = Path.Combine(bundles.Dir.Path, "store-" + Guid.NewGuid().ToString("N")[..8]);
        var store = ArtifactStores.Create(new ArtifactStoreOptions { LocalRoot = storeDir });
        var goodRef = await store.PublishDirectoryAsync("runs/b/bundle", "serving-bundle", bundles.B.BundleDir);

        // Bundle a with a file that no longer matches its own manifest (the store's hashes are of the tampered bytes).
        var tampered = Path.Combine(bundles.Dir.Path, "tampered-" + Guid.NewGuid().ToString("N")[..8]);
        BundlesFixture.Copy(bundles.A.BundleDir, tampered);
        var popularity = Path.Combine(tampered, BundleFiles.Popularity);
        File.WriteAllText(popularity, File.ReadAllText(popularity).Replace("\"counts\"", "\"counts\" "));
        var badRef = await store.PublishDirectoryAsync("runs/bad/bundle", "serving-bundle", tampered);

        var root = bundles.NewRoot(bundles.A);
        await using var factory = new ServingFactory(root, new Dictionary<string, string?>
        {
            ["ConnectionStrings:bus"] = rabbit.ConnectionString,
            ["ConnectionStrings:artifacts"] = storeDir,
            ["Artifacts:CacheDirectory"] = Path.Combine(bundles.Dir.Path, "cache"),
            ["Serving:PollInterval"] = "01:00:00",
        });
        var client = await factory.ReadyClientAsync();
        Assert.Equal(bundles.A.Manifest.ModelVersion, await Version(client));

        var bus = Bus.Factory.CreateUsingRabbitMq(cfg => cfg.Host(rabbit.AmqpUri));
        await bus.StartAsync();
        try
        {
            await bus.Publish(new ModelPublished(Guid.NewGuid(), bundles.B.Manifest.ModelVersion, goodRef, goodRef, DateTimeOffset.UtcNow));
            await Until(async () => await Version(client) == bundles.B.Manifest.ModelVersion, "b to be live");
            var answer = await client.PostJsonAsync("/v1/recommendations/videos", new { video_history = new[] { bundles.B.Catalog.PhotoIds[3] }, k = 3 });
            Assert.Equal(HttpStatusCode.OK, answer.StatusCode);
            Assert.Equal(bundles.B.Manifest.ModelVersion, answer.Headers.GetValues("X-Model-Version").Single());
            Assert.True(File.Exists(Path.Combine(root, bundles.B.Manifest.ModelVersion, BundleManifest.FileName)), "b was not installed into the bundle root");

            await bus.Publish(new ModelPublished(Guid.NewGuid(), bundles.A.Manifest.ModelVersion, badRef, badRef, DateTimeOffset.UtcNow));
            string? error = null;
            await Until(async () => (error = (await (await client.GetAsync("/v1/model")).BodyAsync())["last_error"]?.GetValue<string>()) is not null, "the bad bundle to be reported");
            Assert.Contains(BundleFiles.Popularity, error);
            Assert.Equal(bundles.B.Manifest.ModelVersion, await Version(client));
            var still = await client.PostJsonAsync("/v1/recommendations/videos", new { video_history = new[] { bundles.B.Catalog.PhotoIds[3] }, k = 3 });
            Assert.Equal(HttpStatusCode.OK, still.StatusCode);
            Assert.Equal(bundles.B.Manifest.ModelVersion, still.Headers.GetValues("X-Model-Version").Single());
        }
        finally
        {
            await bus.StopAsync();
        }
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
