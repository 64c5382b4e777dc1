using System.Diagnostics;
using LSVCR.Artifacts;
using Microsoft.Extensions.Logging;

namespace LSVCR.Jobs;

/// <summary>What a step's body produced: files (relative to <see cref="Directory"/>) to publish, and small metadata.</summary>
internal sealed record StepProduct(string Directory, IReadOnlyList<string> Files, IReadOnlyDictionary<string, string> Metadata);

/// <summary>
/// The frame every job runs in: an activity, logs and metrics; "already published under this step key" → reuse
/// without work; a work folder keyed by the step key (so a retry on the same machine resumes); the output published
/// manifest-last; the work folder removed afterwards.
/// </summary>
internal sealed class StepRunner(IArtifactStore store, JobTelemetry telemetry, ILogger logger, string workRoot)
{
    public const string StepKeyMetadata = "step_key", StepMetadata = "step";

    public IArtifactStore Store => store;

    public async Task<(JobOutput Output, ArtifactManifest Manifest)> RunAsync(string step, string outputSet, string artifactKind, string stepKey,
        Func<string, IProgress<JobProgress>, CancellationToken, Task<StepProduct>> body, IProgress<JobProgress>? progress, CancellationToken ct)
    {
        ArtifactPaths.CheckSet(outputSet);
        using var activity = telemetry.Source.StartActivity(step);
        activity?.SetTag("lsvcr.step", step);
        activity?.SetTag("lsvcr.step_key", stepKey);
        activity?.SetTag("lsvcr.output_set", outputSet);
        using var scope = logger.BeginScope(new Dictionary<string, object> { ["Step"] = step, ["StepKey"] = stepKey[..16], ["OutputSet"] = outputSet });
        var clock = Stopwatch.StartNew();
        telemetry.Active.Add(1);
        string outcome = "failed";
        ErrorKind? errorKind = null;
        try
        {
            if (await store.TryGetManifestAsync(outputSet, ct) is { } existing)
            {
                outcome = "reused";
                return (Reuse(existing, stepKey, outputSet), existing);
            }
            var work = Path.Combine(workRoot, step, stepKey[..32]);
            Directory.CreateDirectory(work);
            logger.LogInformation("{Step} started into {OutputSet} (work folder {Work})", step, outputSet, work);
            var product = await body(work, new ProgressRelay(progress, logger, activity), ct);

            var metadata = new Dictionary<string, string>(product.Metadata) { [StepKeyMetadata] = stepKey, [StepMetadata] = step };
            ArtifactSetReference reference;
            await using (var writer = store.CreateSet(outputSet, artifactKind))
            {
                foreach (var file in product.Files)
                    await writer.AddLocalFileAsync(file, Path.Combine(product.Directory, file.Replace('/', Path.DirectorySeparatorChar)), ct);
                try
                {
                    reference = await writer.CommitAsync(metadata, ct);
                }
                catch (ArtifactSetConflictException)
                {
                    // A duplicate delivery of this step published first (its bytes may differ in timings): theirs stands.
                    var winner = await store.TryGetManifestAsync(outputSet, CancellationToken.None)
                                 ?? throw new LsvcrException($"{store.Name}:{outputSet}: conflict reported but no set found", ErrorKind.Transient);
                    outcome = "reused";
                    return (Reuse(winner, stepKey, outputSet), winner);
                }
            }
            TryDelete(work);
            outcome = "completed";
            logger.LogInformation("{Step} published {OutputSet} ({Files} files, {Bytes} bytes, content {Content}) in {Seconds:F1} s",
                step, outputSet, reference.Files, reference.Size, reference.ContentSha256[..12], clock.Elapsed.TotalSeconds);
            return (new JobOutput(reference, stepKey, Reused: false), await store.GetManifestAsync(reference, ct));
        }
        catch (OperationCanceledException)
        {
            outcome = "cancelled";
            logger.LogWarning("{Step} cancelled after {Seconds:F1} s", step, clock.Elapsed.TotalSeconds);
            throw;
        }
        catch (Exception e)
        {
            errorKind = e is LsvcrException le ? le.Kind : ErrorKind.Internal;
            activity?.SetStatus(ActivityStatusCode.Error, e.Message);
            activity?.SetTag("error.type", errorKind.ToString());
            logger.LogError(e, "{Step} failed ({Kind}): {Message}", step, errorKind, e.Message);
            throw;
        }
        finally
        {
            telemetry.Active.Add(-1);
            var tags = new TagList { { "outcome", outcome }, { "step", step } };
            if (errorKind is { } k) tags.Add("error.kind", k.ToString());
            telemetry.Runs.Add(1, tags);
            telemetry.Duration.Record(clock.Elapsed.TotalSeconds, tags);
            activity?.SetTag("lsvcr.outcome", outcome);
        }
    }

    /// <summary>The output set when it is already published under this step key (nothing to do), else null; a set
    /// published under another step key is an error.</summary>
    public async Task<JobOutput?> TryReuseAsync(string outputSet, string stepKey, CancellationToken ct) =>
        await store.TryGetManifestAsync(outputSet, ct) is { } existing ? Reuse(existing, stepKey, outputSet) : null;

    private JobOutput Reuse(ArtifactManifest existing, string stepKey, string outputSet)
    {
        var storedKey = existing.Metadata.GetValueOrDefault(StepKeyMetadata);
        if (storedKey != stepKey)
            throw new LsvcrException($"{store.Name}:{outputSet} already holds the output of another step (step key {storedKey?[..16] ?? "none"}…, " +
                                     $"this one is {stepKey[..16]}…): its inputs or options differ; publish under a new set id");
        logger.LogInformation("{OutputSet} is already published for this step key: nothing to do", outputSet);
        return new JobOutput(existing.ToReference(store.Name), stepKey, Reused: true);
    }

    private static void TryDelete(string dir)
    {
        try { Directory.Delete(dir, recursive: true); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    /// <summary>Forwards progress to the caller, and logs each new stage (plus every 10 s within one) and marks it on the trace.</summary>
    private sealed class ProgressRelay(IProgress<JobProgress>? inner, ILogger logger, Activity? activity) : IProgress<JobProgress>
    {
        private readonly Lock gate = new();
        private string? stage;
        private long lastLog;

        public void Report(JobProgress value)
        {
            inner?.Report(value);
            lock (gate)
            {
                bool newStage = value.Stage != stage;
                long now = Stopwatch.GetTimestamp();
                if (!newStage && Stopwatch.GetElapsedTime(lastLog, now) < TimeSpan.FromSeconds(10) && value.Done != value.Total) return;
                stage = value.Stage;
                lastLog = now;
                if (newStage) activity?.AddEvent(new ActivityEvent(value.Stage));
            }
            logger.LogInformation("{Stage}: {Done}/{Total} {Detail}", value.Stage, value.Done, value.Total, value.Detail);
        }
    }
}

/// <summary>
/// libtorch's random generator and thread settings are process-wide (FineTuner's remarks): two trainings or
/// evaluations in one process would interleave their draws. Jobs that run the model take this gate and refuse to run
/// beside another instead of silently disturbing it.
/// </summary>
internal static class TorchGate
{
    private static readonly SemaphoreSlim Gate = new(1, 1);

    public static async Task<T> RunAsync<T>(string what, Func<Task<T>> body)
    {
        if (!Gate.Wait(0))
            throw new LsvcrException($"{what}: another training or evaluation job is running in this process, and libtorch's random generator " +
                                     "is process-wide; run one at a time (a consumer concurrency limit of 1)", ErrorKind.Transient);
        try { return await body(); }
        finally { Gate.Release(); }
    }
}
