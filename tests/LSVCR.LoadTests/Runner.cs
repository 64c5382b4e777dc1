using System.Diagnostics;
using HdrHistogram;

namespace LSVCR.LoadTests;

/// <summary>Counts and latencies of one scenario run. Latency is in microseconds from each call's intended start
/// (open models) so a stalled server cannot hide behind coordinated omission.</summary>
public sealed class ScenarioStats(string name)
{
    private readonly object _gate = new();
    public string Name { get; } = name;
    public LongHistogram Ok { get; } = new(60_000_000, 3) /* µs, up to 60 s */;
    public LongHistogram Failed { get; } = new(60_000_000, 3) /* µs, up to 60 s */;
    public SortedDictionary<int, long> StatusCodes { get; } = [];
    public Dictionary<string, long> Errors { get; } = [];
    public long Requests { get; private set; }
    public long OkCount { get; private set; }
    public long FailCount { get; private set; }
    public TimeSpan Duration { get; set; }
    public List<string> Notes { get; } = [];
    public List<(Threshold Threshold, bool Passed, double Actual)> Checked { get; } = [];

    public void Record(Response r, long micros)
    {
        lock (_gate)
        {
            Requests++;
            var us = Math.Clamp(micros, 1, Ok.HighestTrackableValue);
            if (r.IsOk) { OkCount++; Ok.RecordValue(us); }
            else
            {
                FailCount++;
                Failed.RecordValue(us);
                if (r.Error is { } e) Errors[e] = Errors.GetValueOrDefault(e) + 1;
            }
            StatusCodes[r.StatusCode] = StatusCodes.GetValueOrDefault(r.StatusCode) + 1;
        }
    }

    public double Rps => Duration.TotalSeconds > 0 ? OkCount / Duration.TotalSeconds : 0;
    public double FailPercent => Requests == 0 ? 0 : 100.0 * FailCount / Requests;
    public long ClassCount(int hundreds) => StatusCodes.Where(kv => kv.Key / 100 == hundreds).Sum(kv => kv.Value);
    public double Percentile(double p) => OkCount == 0 ? double.NaN : Ok.GetValueAtPercentile(p) / 1000.0;

    /// <summary>A metric of a threshold (latencies in ms).</summary>
    public double Metric(string metric) => metric switch
    {
        "rps" => Rps,
        "fail%" => FailPercent,
        "ok%" => 100 - FailPercent,
        "4xx%" => Requests == 0 ? 0 : 100.0 * ClassCount(4) / Requests,
        "mean" => OkCount == 0 ? double.NaN : Ok.GetMean() / 1000.0,
        "max" => OkCount == 0 ? double.NaN : Ok.GetMaxValue() / 1000.0,
        ['p', .. var p] => Percentile(double.Parse(p, System.Globalization.CultureInfo.InvariantCulture)),
        [var c, 'x', 'x'] => ClassCount(c - '0'),
        _ when int.TryParse(metric, out var code) => StatusCodes.GetValueOrDefault(code),
        _ => throw new ArgumentException($"unknown metric {metric}"),
    };
}

/// <summary>Runs scenarios: open models schedule calls at their intended times (a 1 ms scheduler tick, calls due in a
/// tick start together and are measured from their own intended time), closed models loop copies.</summary>
public static class ScenarioRunner
{
    /// <summary>Calls allowed in flight before new calls count as failed ("client saturated") instead of piling up.</summary>
    public const int MaxInFlight = 20_000;

    public static async Task<ScenarioStats> RunAsync(Scenario scenario, CancellationToken ct = default)
    {
        var stats = new ScenarioStats(scenario.Name);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var background = scenario.Background?.Invoke(stop.Token);
        var started = Stopwatch.GetTimestamp();
        double previousRate = 0;
        long invocation = 0;
        var random = new Random(42);
        var pending = new List<Task>();
        int inFlight = 0;
        foreach (var sim in scenario.Simulations)
        {
            var simStart = Stopwatch.GetTimestamp();
            var end = simStart + (long)(sim.During.TotalSeconds * Stopwatch.Frequency);
            switch (sim)
            {
                case LoadSimulation.KeepConstantSim k:
                    await Task.WhenAll(Enumerable.Range(0, k.Copies).Select(c => Task.Run(async () =>
                    {
                        var rng = new Random(c);
                        while (Stopwatch.GetTimestamp() < end && !stop.IsCancellationRequested)
                        {
                            var t0 = Stopwatch.GetTimestamp();
                            var r = await Call(scenario, new ScenarioContext(Interlocked.Increment(ref invocation), rng, stop.Token));
                            stats.Record(r, Micros(Stopwatch.GetTimestamp() - t0));
                        }
                    })));
                    break;
                default:
                    var (from, to) = sim switch
                    {
                        LoadSimulation.InjectSim i => (i.Rate / i.Interval.TotalSeconds, i.Rate / i.Interval.TotalSeconds),
                        LoadSimulation.RampingInjectSim r => (previousRate, r.Rate / r.Interval.TotalSeconds),
                        _ => throw new InvalidOperationException(),
                    };
                    double RateAt(long t) => from + (to - from) * Math.Clamp((double)(t - simStart) / (end - simStart), 0, 1);
                    long next = simStart;
                    while (next < end && !stop.IsCancellationRequested)
                    {
                        var now = Stopwatch.GetTimestamp();
                        while (next <= now && next < end)
                        {
                            var intended = next;
                            var rate = Math.Max(RateAt(next), 0.5);
                            next += (long)(Stopwatch.Frequency / rate);
                            if (Volatile.Read(ref inFlight) >= MaxInFlight)
                            {
                                stats.Record(Response.Fail(0, "client saturated"), Micros(now - intended));
                                continue;
                            }
                            Interlocked.Increment(ref inFlight);
                            var ctx = new ScenarioContext(++invocation, new Random(random.Next()), stop.Token);
                            pending.Add(Task.Run(async () =>
                            {
                                try
                                {
                                    var r = await Call(scenario, ctx);
                                    stats.Record(r, Micros(Stopwatch.GetTimestamp() - intended));
                                }
                                finally { Interlocked.Decrement(ref inFlight); }
                            }));
                        }
                        if (pending.Count > 50_000) { pending.RemoveAll(t => t.IsCompleted); }
                        Thread.Sleep(1);
                    }
                    previousRate = to;
                    break;
            }
        }
        await Task.WhenAll(pending);
        stats.Duration = Stopwatch.GetElapsedTime(started);
        stop.Cancel();
        if (background is not null) stats.Notes.Add(await background);
        if (scenario.After is not null) stats.Notes.Add(await scenario.After());
        foreach (var t in scenario.Thresholds)
        {
            var (passed, actual) = t.Check(stats);
            stats.Checked.Add((t, passed, actual));
        }
        return stats;
    }

    private static async Task<Response> Call(Scenario s, ScenarioContext ctx)
    {
        try { return await s.Step(ctx); }
        catch (Exception e) { return Response.Fail(0, e.GetType().Name); }
    }

    private static long Micros(long ticks) => ticks * 1_000_000 / Stopwatch.Frequency;
}
