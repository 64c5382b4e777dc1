using System.Diagnostics.Metrics;
using LSVCR.Artifacts;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace LSVCR.Jobs;

/// <summary>
/// What every job service shares: the artifact store it reads and publishes through, its telemetry (one
/// <see cref="JobTelemetry"/> per job kind) and the <see cref="StepRunner"/> frame over the configured work folder.
/// </summary>
public abstract class JobService(string telemetryName, IArtifactStore store, IOptions<JobsOptions> jobs, ILogger logger, IMeterFactory meters)
    : IDisposable
{
    private protected IArtifactStore Store { get; } = store;
    private protected JobTelemetry Telemetry { get; } = new(telemetryName, meters);

    /// <summary>A fresh run frame (activity, logs, metrics, reuse by step key, work folder, manifest-last publishing).</summary>
    private protected StepRunner Runner() => new(Store, Telemetry, logger, jobs.Value.WorkDirectory);

    public virtual void Dispose()
    {
        Telemetry.Dispose();
        GC.SuppressFinalize(this);
    }
}
