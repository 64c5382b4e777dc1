using System.Collections.Concurrent;
using System.Net;
using System.Text.Json.Nodes;

namespace LSVCR.Serving.Tests;

/// <summary>429 under a saturated queue; a hot swap under concurrent requests; a bad bundle keeps the old model.</summary>
public sealed class LoadSheddingAndSwapTests(BundlesFixture bundles) : IClassFixture<BundlesFixture>
{
    [Fact]
    public void Provider_cuda_selects_the_CUDA_provider_and_this_CPU_build_refuses_it_with_the_setting_named()
    {
        // The service references Microsoft.ML.OnnxRuntime (CPU); its native library rejects the CUDA provider, which
        // shows that Provider = cuda reaches AppendExecutionProvider_CUDA. A GPU build would load here instead.
        var e = Assert.Throws<LsvcrException>(() => ServingModel.Load(bundles.A.BundleDir, new ServingOptions { Provider = "cuda" }));
        Assert.Contains("Serving:Provider", e.Message);
        Assert.Contains("Microsoft.ML.OnnxRuntime.Gpu", e.Message);
    }

    [Fact]
    public async Task A_full_queue_answers_429_with_retry_after_and_never_5xx()
    {
        // Two admitted requests sit in a batch that waits its full 1 s delay for more; the rest find the queue full.
        await using var factory = new ServingFactory(bundles.NewRoot(bundles.A), new Dictionary<string, string?>
        {
            ["Serving:QueueCapacity"] = "2", ["Serving:MaxBatchSize"] = "64", ["Serving:MaxBatchDelay"] = "00:00:01", ["Serving:Workers"] = "1",
        });
        var client = await factory.ReadyClientAsync();
        using var model = ServingModel.Load(bundles.A.BundleDir, new ServingOptions());
        var body = new { video_history = new[] { model.VideoIds[1], model.VideoIds[2] }, k = 5 };
        var responses = await Task.WhenAll(Enumerable.Range(0, 12).Select(_ => client.PostJsonAsync("/v1/recommendations/videos", body)));
        var rejected = responses.Where(r => r.StatusCode == HttpStatusCode.TooManyRequests).ToList();
        Assert.Equal(2, responses.Count(r => r.StatusCode == HttpStatusCode.OK));
        Assert.Equal(10, rejected.Count);
        foreach (var r in rejected)
        {
            Assert.Equal(TimeSpan.FromSeconds(1), r.Headers.RetryAfter?.Delta);
            Assert.Equal("application/problem+json", r.Content.Headers.ContentType?.MediaType);
        }
        // The fallback path never queues, so it is still answered while the queue is full.
        Assert.Equal(HttpStatusCode.OK, (await client.PostJsonAsync("/v1/recommendations/videos", new { k = 3 })).StatusCode);
    }

    [Fact]
    public async Task Hot_swap_under_concurrent_requests_fails_none_and_every_version_matches_its_scores()
    {
        var root = bundles.NewRoot(bundles.A);
        await using var factory = new ServingFactory(root, new Dictionary<string, string?> { ["Serving:MaxBatchDelay"] = "00:00:00.002" });
        var client = await factory.ReadyClientAsync();
        using var a = ServingModel.Load(bundles.A.BundleDir, new ServingOptions());
        using var b = ServingModel.Load(bundles.B.BundleDir, new ServingOptions());
        Assert.NotEqual(a.Version, b.Version);
        string[] history = [a.VideoIds[3], a.VideoIds[8], a.VideoIds[5]];
        string[] Expected(ServingModel m)
        {
            using var output = m.EncodeRec([HistoryResolver.Resolve(m, history, []).History]);
            var s = output.Scores(0);
            s[0] = float.NegativeInfinity;
            foreach (var v in history) s[m.VideoIndex[v]] = float.NegativeInfinity;
            return [.. TopK.Select(s, 10).Select(t => m.VideoIds[t.Id])];
        }
        var expected = new Dictionary<string, string[]> { [a.Version] = Expected(a), [b.Version] = Expected(b) };
        Assert.NotEqual(expected[a.Version], expected[b.Version]);

        var results = new ConcurrentBag<(HttpStatusCode Status, string? Header, string? Version, string[] Items)>();
        using var stop = new CancellationTokenSource();
        var sawB = new TaskCompletionSource();
        async Task Client()
        {
            for (int i = 0; i < 5000 && !stop.IsCancellationRequested; i++)
            {
                var r = await client.PostJsonAsync("/v1/recommendations/videos", new { video_history = history, k = 10 });
                var body = (JsonNode.Parse(await r.Content.ReadAsStringAsync()) as JsonObject)!;
                var version = (string?)body["model_version"];
                results.Add((r.StatusCode, r.Headers.TryGetValues("X-Model-Version", out var h) ? h.Single() : null, version,
                    body["items"] is JsonArray items ? [.. items.Select(x => (string)x!["video"]!)] : []));
                if (version == b.Version && results.Count(x => x.Version == b.Version) >= 50) sawB.TrySetResult();
            }
        }
        var clients = Enumerable.Range(0, 6).Select(_ => Task.Run(Client)).ToArray();
        await Task.Delay(300);
        // Publish: the bundle appears atomically (a rename), as the export and the artifact download write it.
        var staging = Path.Combine(root, ".b-staging");
        BundlesFixture.Copy(bundles.B.BundleDir, staging);
        Directory.Move(staging, Path.Combine(root, "b"));
        await Task.WhenAny(sawB.Task, Task.Delay(TimeSpan.FromSeconds(60)));
        stop.Cancel();
        await Task.WhenAll(clients);

        Assert.True(sawB.Task.IsCompleted, "the new bundle was not served within 60 s");
        Assert.All(results, r => Assert.Equal(HttpStatusCode.OK, r.Status));
        Assert.All(results, r => Assert.Equal(r.Version, r.Header));
        Assert.All(results, r => Assert.Equal(expected[r.Version!], r.Items));
        Assert.Contains(results, r => r.Version == a.Version);
        var model = await (await client.GetAsync("/v1/model")).BodyAsync();
        Assert.Equal(b.Version, (string?)model["model_version"]);
        Assert.Equal([a.Version, b.Version], model["history"]!.AsArray().Select(n => (string)n!));

        // Rollback with the admin key returns to a, and the pin keeps it there although b is newer.
        using var admin = factory.CreateClient();
        admin.DefaultRequestHeaders.Add("X-Api-Key", ServingFactory.AdminKey);
        var rolled = await admin.PostAsync("/v1/admin/rollback", null);
        Assert.Equal(HttpStatusCode.OK, rolled.StatusCode);
        Assert.Equal(a.Version, (string?)(await rolled.BodyAsync())["model_version"]);
        await Task.Delay(400); // several polls
        var after = await (await client.PostJsonAsync("/v1/recommendations/videos", new { video_history = history, k = 10 })).BodyAsync();
        Assert.Equal(a.Version, (string?)after["model_version"]);
        Assert.Equal(expected[a.Version], after["items"]!.AsArray().Select(x => (string)x!["video"]!));
    }

    [Fact]
    public void A_new_model_of_the_same_catalogue_reuses_the_served_models_id_maps()
    {
        using var a = ServingModel.Load(bundles.A.BundleDir, new ServingOptions());
        using var b = ServingModel.Load(bundles.B.BundleDir, new ServingOptions(), catalogueFrom: a);
        Assert.NotEqual(a.Version, b.Version);
        Assert.Same(a.CommentIds, b.CommentIds);
        Assert.Same(a.CommentIndex, b.CommentIndex);
        Assert.Same(a.VideoIndex, b.VideoIndex);
        Assert.Same(a.VideoComments, b.VideoComments);
        using var fresh = ServingModel.Load(bundles.B.BundleDir, new ServingOptions());
        Assert.NotSame(a.CommentIds, fresh.CommentIds);
        Assert.Equal(a.CommentIds, fresh.CommentIds);
    }

    [Fact]
    public async Task A_bundle_that_fails_to_verify_is_reported_and_the_old_model_stays()
    {
        var root = bundles.NewRoot(bundles.A);
        await using var factory = new ServingFactory(root);
        var client = await factory.ReadyClientAsync();
        var staging = Path.Combine(root, ".bad");
        BundlesFixture.Copy(bundles.B.BundleDir, staging);
        var vectors = Path.Combine(staging, BundleFiles.VideoVectors);
        var bytes = File.ReadAllBytes(vectors);
        bytes[^1] ^= 0x5a; // one flipped byte: the hash no longer matches the manifest
        File.WriteAllBytes(vectors, bytes);
        Directory.Move(staging, Path.Combine(root, "bad"));
        JsonObject model = [];
        for (int i = 0; i < 100 && model["last_error"] is null; i++)
        {
            await Task.Delay(100);
            model = await (await client.GetAsync("/v1/model")).BodyAsync();
        }
        Assert.Contains(BundleFiles.VideoVectors, (string?)model["last_error"]);
        Assert.Equal(bundles.A.Manifest.ModelVersion, (string?)model["model_version"]);
        var r = await client.PostJsonAsync("/v1/recommendations/videos", new { video_history = new[] { bundles.A.Catalog.PhotoIds[2] }, k = 3 });
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        Assert.Equal(bundles.A.Manifest.ModelVersion, r.Headers.GetValues("X-Model-Version").Single());
    }
}
