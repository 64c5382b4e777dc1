using System.Globalization;
using System.Text.RegularExpressions;

namespace LSVCR.LoadTests;

// NBomber's concepts, so its scenarios port one to one (NBomber itself is not in the package feed):
//   Scenario.Create(name, async ctx => Response.Ok()) .WithLoadSimulations(Simulation.Inject(...)) .WithThresholds(...)
// Only the parts these load runs need are written here.

/// <summary>What one step of a scenario returned.</summary>
public readonly record struct Response(bool IsOk, int StatusCode, string? Error = null)
{
    public static Response Ok(int statusCode = 200) => new(true, statusCode);
    public static Response Fail(int statusCode, string? error = null) => new(false, statusCode, error);
}

/// <summary>The per-call context a scenario function gets (NBomber's IScenarioContext, trimmed).</summary>
public sealed class ScenarioContext(long invocation, Random random, CancellationToken ct)
{
    public long InvocationNumber { get; } = invocation;
    public Random Random { get; } = random;
    public CancellationToken CancellationToken { get; } = ct;
}

/// <summary>A load shape. Open models (Inject, RampingInject) start calls on a schedule whatever the server does;
/// the closed model (KeepConstant) keeps a number of copies looping.</summary>
public abstract record LoadSimulation(TimeSpan During)
{
    /// <summary>NBomber Inject: <paramref name="rate"/> calls per <paramref name="interval"/>, evenly spaced.</summary>
    public sealed record InjectSim(double Rate, TimeSpan Interval, TimeSpan During) : LoadSimulation(During);
    /// <summary>NBomber RampingInject: the rate moves linearly from the previous simulation's rate to <paramref name="Rate"/>.</summary>
    public sealed record RampingInjectSim(double Rate, TimeSpan Interval, TimeSpan During) : LoadSimulation(During);
    /// <summary>NBomber KeepConstant: <paramref name="Copies"/> concurrent loops.</summary>
    public sealed record KeepConstantSim(int Copies, TimeSpan During) : LoadSimulation(During);
}

public static class Simulation
{
    public static LoadSimulation Inject(double rate, TimeSpan interval, TimeSpan during) => new LoadSimulation.InjectSim(rate, interval, during);
    public static LoadSimulation RampingInject(double rate, TimeSpan interval, TimeSpan during) => new LoadSimulation.RampingInjectSim(rate, interval, during);
    public static LoadSimulation KeepConstant(int copies, TimeSpan during) => new LoadSimulation.KeepConstantSim(copies, during);
}

public sealed record Scenario(string Name, Func<ScenarioContext, Task<Response>> Step)
{
    public IReadOnlyList<LoadSimulation> Simulations { get; init; } = [];
    public IReadOnlyList<Threshold> Thresholds { get; init; } = [];
    /// <summary>Runs beside the load (e.g. a model swap); its outcome goes into the report.</summary>
    public Func<CancellationToken, Task<string>>? Background { get; init; }
    /// <summary>Checked after the load (e.g. "still healthy").</summary>
    public Func<Task<string>>? After { get; init; }

    public static Scenario Create(string name, Func<ScenarioContext, Task<Response>> step) => new(name, step);
    public Scenario WithLoadSimulations(params LoadSimulation[] s) => this with { Simulations = s };
    public Scenario WithThresholds(params string[] t) => this with { Thresholds = [.. t.Select(Threshold.Parse)] };
}

/// <summary>A threshold written like NBomber's: <c>p99 &lt; 10ms</c>, <c>RPS &gt;= 2000</c>, <c>fail % &lt; 0.1</c>,
/// <c>5xx == 0</c>, <c>429 &gt; 0</c>, <c>4xx % == 100</c>, <c>mean &lt; 2ms</c>.</summary>
public sealed partial record Threshold(string Text, string Metric, string Op, double Value)
{
    [GeneratedRegex(@"^\s*(p\d+(?:\.\d+)?|mean|max|rps|fail\s*%|ok\s*%|4xx\s*%|[1-5]xx|\d{3})\s*(<=|>=|==|<|>)\s*([\d.]+)\s*(ms|s|us)?\s*$", RegexOptions.IgnoreCase)]
    private static partial Regex Pattern();

    public static Threshold Parse(string text)
    {
        var m = Pattern().Match(text);
        if (!m.Success) throw new ArgumentException($"threshold \"{text}\": expected e.g. \"p99 < 10ms\", \"RPS >= 2000\", \"fail % < 0.1\", \"5xx == 0\"");
        var value = double.Parse(m.Groups[3].Value, CultureInfo.InvariantCulture);
        value *= m.Groups[4].Value.ToLowerInvariant() switch { "s" => 1000, "us" => 0.001, _ => 1 }; // latencies in ms
        return new Threshold(text.Trim(), Regex.Replace(m.Groups[1].Value.ToLowerInvariant(), @"\s+", ""), m.Groups[2].Value, value);
    }

    public (bool Passed, double Actual) Check(ScenarioStats s)
    {
        var actual = s.Metric(Metric);
        var passed = Op switch
        {
            "<" => actual < Value, "<=" => actual <= Value, ">" => actual > Value, ">=" => actual >= Value, _ => Math.Abs(actual - Value) < 1e-9,
        };
        return (passed, actual);
    }
}
