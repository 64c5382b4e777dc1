using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace LSVCR.Jobs;

/// <summary>
/// The <see cref="ActivitySource"/> and <see cref="Meter"/> of one job kind (both named <c>LSVCR.&lt;Kind&gt;</c>), with its
/// instruments: <c>lsvcr.job.runs</c> (count, tagged <c>outcome</c> = completed | reused | cancelled | failed, and
/// <c>error.kind</c> on failures), <c>lsvcr.job.duration</c> (seconds) and <c>lsvcr.job.active</c>. Hosts add
/// <see cref="AllNames"/> to their OpenTelemetry tracing and metrics.
/// </summary>
public sealed class JobTelemetry : IDisposable
{
    public const string Embeddings = "LSVCR.Embeddings", Alignment = "LSVCR.Alignment", FineTuning = "LSVCR.FineTuning", Evaluation = "LSVCR.Evaluation",
        Experiments = "LSVCR.Experiments", Publishing = "LSVCR.Publishing";

    /// <summary>Every job kind's source and meter name.</summary>
    public static readonly IReadOnlyList<string> AllNames = [Embeddings, Alignment, FineTuning, Evaluation, Experiments, Publishing];

    public JobTelemetry(string name, IMeterFactory meters)
    {
        Name = name;
        Source = new ActivitySource(name);
        Meter = meters.Create(name);
        Runs = Meter.CreateCounter<long>("lsvcr.job.runs", "{run}", "Job runs by outcome");
        Duration = Meter.CreateHistogram<double>("lsvcr.job.duration", "s", "Wall time of a job run");
        Active = Meter.CreateUpDownCounter<long>("lsvcr.job.active", "{run}", "Job runs in progress");
    }

    public string Name { get; }
    public ActivitySource Source { get; }
    public Meter Meter { get; }
    public Counter<long> Runs { get; }
    public Histogram<double> Duration { get; }
    public UpDownCounter<long> Active { get; }

    public void Dispose() => Source.Dispose();  // the meter belongs to the factory
}
