using System.Diagnostics.Metrics;

namespace LSVCR.Serving;

/// <summary>The service's OpenTelemetry instruments (meter <see cref="MeterName"/>).</summary>
public sealed class ServingMetrics : IDisposable
{
    public const string MeterName = "LSVCR.Serving";

    private readonly Meter _meter;
    public Histogram<double> RequestDuration { get; }
    public Histogram<int> BatchSize { get; }
    public Counter<long> Rejected { get; }
    public Histogram<double> ModelLoadDuration { get; }

    public ServingMetrics(IMeterFactory factory)
    {
        _meter = factory.Create(MeterName);
        RequestDuration = _meter.CreateHistogram<double>("lsvcr.serving.request.duration", "s", "Request latency per endpoint.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 1] });
        BatchSize = _meter.CreateHistogram<int>("lsvcr.serving.batch.size", "{request}", "Requests per encoder batch.",
            advice: new InstrumentAdvice<int> { HistogramBucketBoundaries = [1, 2, 4, 8, 16, 32, 64, 128, 256] });
        Rejected = _meter.CreateCounter<long>("lsvcr.serving.rejected", "{request}", "Requests answered 429 because the queue was full.");
        ModelLoadDuration = _meter.CreateHistogram<double>("lsvcr.serving.model.load.duration", "s", "Bundle load + warm-up time.");
    }

    /// <summary>Queue depth per endpoint and the loaded model version (1 for the current version's tag).</summary>
    public void Observe(Func<IEnumerable<Measurement<int>>> queueDepth, Func<IEnumerable<Measurement<int>>> model)
    {
        _meter.CreateObservableGauge("lsvcr.serving.queue.depth", queueDepth, "{request}", "Requests admitted and not yet answered, per endpoint.");
        _meter.CreateObservableGauge("lsvcr.serving.model.version", model, null, "1 for the loaded model version (tag model_version).");
    }

    public void Dispose() => _meter.Dispose();
}
