using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Net;
using Microsoft.Extensions.DependencyInjection;

namespace LSVCR.Serving.Tests;

/// <summary>The service's instruments as a MeterListener sees them (only this host's meter: tests run side by side):
/// latency per endpoint, batch sizes, queue depth, 429s and the model version, with their values and tags.</summary>
public sealed class MetricsTests(BundlesFixture bundles) : IClassFixture<BundlesFixture>
{
    private sealed record Recorded(string Instrument, double Value, IReadOnlyDictionary<string, string?> Tags);

    [Fact]
    public async Task Latency_batch_size_queue_depth_rejections_and_model_version_are_recorded_with_their_tags()
    {
        // Two requests sit admitted in a batch that waits its full 1 s for more; ten find the queue full.
        await using var factory = new ServingFactory(bundles.NewRoot(bundles.A), new Dictionary<string, string?>
        {
            ["Serving:QueueCapacity"] = "2", ["Serving:MaxBatchSize"] = "64", ["Serving:MaxBatchDelay"] = "00:00:01", ["Serving:Workers"] = "1",
        });
        var client = await factory.ReadyClientAsync();
        var scope = factory.Services.GetRequiredService<IMeterFactory>();
        var recorded = new ConcurrentQueue<Recorded>(); // measurements as they happen
        var observed = new ConcurrentQueue<Recorded>(); // the gauges, when the test asks for them
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == ServingMetrics.MeterName && ReferenceEquals(instrument.Meter.Scope, scope)) l.EnableMeasurementEvents(instrument);
        };
        void Add(Instrument i, double v, ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            var d = new Dictionary<string, string?>();
            foreach (var t in tags) d[t.Key] = t.Value?.ToString();
            (i.IsObservable ? observed : recorded).Enqueue(new Recorded(i.Name, v, d));
        }
        listener.SetMeasurementEventCallback<double>((i, v, t, _) => Add(i, v, t));
        listener.SetMeasurementEventCallback<int>((i, v, t, _) => Add(i, v, t));
        listener.SetMeasurementEventCallback<long>((i, v, t, _) => Add(i, v, t));
        listener.Start();

        var videos = bundles.A.Catalog.PhotoIds;
        var body = new { video_history = new[] { videos[1], videos[2] }, k = 5 };
        var pending = Enumerable.Range(0, 12).Select(_ => client.PostJsonAsync("/v1/recommendations/videos", body)).ToArray();
        // While the batch waits: depth 2 on videos, 0 on comments; model version A.
        List<Recorded> depth = [];
        for (int i = 0; i < 50; i++)
        {
            await Task.Delay(20);
            observed.Clear();
            listener.RecordObservableInstruments();
            depth = [.. observed.Where(r => r.Instrument == "lsvcr.serving.queue.depth")];
            if (depth.Any(d => d.Tags["endpoint"] == "videos" && d.Value == 2)) break;
        }
        Assert.Equal(2, depth.Single(d => d.Tags["endpoint"] == "videos").Value);
        Assert.Equal(0, depth.Single(d => d.Tags["endpoint"] == "comments").Value);
        var version = Assert.Single(observed, r => r.Instrument == "lsvcr.serving.model.version");
        Assert.Equal(1, version.Value);
        Assert.Equal(bundles.A.Manifest.ModelVersion, version.Tags["model_version"]);

        var responses = await Task.WhenAll(pending);
        Assert.Equal(2, responses.Count(r => r.StatusCode == HttpStatusCode.OK));
        Assert.Equal(10, responses.Count(r => r.StatusCode == HttpStatusCode.TooManyRequests));
        var watched = Enumerable.Range(1, videos.Length - 1).First(v => bundles.A.Catalog.CommentsOf(v).Length > 0);
        var comments = await client.PostJsonAsync("/v1/recommendations/comments", new { video_history = new[] { videos[3] }, video = videos[watched] });
        Assert.Equal(HttpStatusCode.OK, comments.StatusCode);

        var all = recorded.ToList();
        var rejected = all.Where(r => r.Instrument == "lsvcr.serving.rejected").ToList();
        Assert.Equal(10, rejected.Sum(r => r.Value));
        Assert.All(rejected, r => Assert.Equal("videos", r.Tags["endpoint"]));
        var batches = all.Where(r => r.Instrument == "lsvcr.serving.batch.size").ToList();
        Assert.Equal([("videos", 2.0), ("comments", 1.0)], batches.Select(b => (b.Tags["endpoint"]!, b.Value)));
        var latency = all.Where(r => r.Instrument == "lsvcr.serving.request.duration").ToList();
        var videoLatency = latency.Where(r => r.Tags["endpoint"] == "videos").Select(r => r.Value).Order().ToList();
        Assert.Equal(12, videoLatency.Count);
        // The two answered requests waited out the 1 s batch delay (seconds); the ten 429s were answered at once.
        Assert.All(videoLatency[^2..], s => Assert.InRange(s, 0.95, 30));
        Assert.All(videoLatency[..10], s => Assert.InRange(s, 0, 0.9));
        Assert.InRange(Assert.Single(latency, r => r.Tags["endpoint"] == "comments").Value, 0.95, 30);
    }
}
