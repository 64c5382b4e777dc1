using System.Diagnostics;
using System.Text.Json;
using Azure;
using Azure.Data.Tables;
using LSVCR.Contracts;
using LSVCR.Orchestration.Messaging;
using MassTransit;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace LSVCR.Steps;

/// <summary>Section <c>Jobs:Durable</c>: how long steps run beyond the broker's acknowledgement timeout.</summary>
public sealed class DurableStepOptions
{
    public const string Section = "Jobs:Durable";

    /// <summary>A claimed job whose heartbeat is older than this is taken over by another instance (its worker died).</summary>
    public double LeaseSeconds { get; set; } = 30;
    /// <summary>How often an idle worker looks for a job.</summary>
    public double PollSeconds { get; set; } = 2;
    /// <summary>Runs of a job that failed with a transient fault before the step fails the run.</summary>
    public int MaxAttempts { get; set; } = 3;
    /// <summary>The Azure table of job records (in the <c>runs</c> storage account).</summary>
    public string Table { get; set; } = "stepjobs";
}

/// <summary>
/// Long steps (training runs for hours) must not hold their message: RabbitMQ cancels a delivery that stays
/// unacknowledged longer than its <c>consumer_timeout</c> and hands it to another consumer, so the step would run
/// twice. A durable step's consumer therefore only writes a job record (Azure table <c>stepjobs</c>, keyed by message
/// type and step key) and acknowledges. Each worker instance polls the table, claims one job at a time with an ETag
/// update (one claimant wins), runs the step while renewing a lease (heartbeat), publishes the step's events and marks
/// the record completed. A worker killed mid-step stops renewing; once the lease has run out another instance (or the
/// same one restarted) claims the job and runs it again — resuming from its work folder, deduplicated by the step key.
/// A duplicate delivery of a running job changes nothing; one of a completed job runs it again, which reuses the
/// published output and republishes its completion.
/// </summary>
public static class DurableSteps
{
    internal const string Pending = "Pending", Running = "Running", Completed = "Completed", Failed = "Failed";

    /// <summary>Consumes <typeparamref name="T"/> on the endpoint <paramref name="endpointName"/> as a durable step run by
    /// <typeparamref name="TConsumer"/> (which overrides <c>RunAsync(message, publish, ct)</c>).</summary>
    public static void AddDurableStep<TConsumer, T>(this IBusRegistrationConfigurator bus, string endpointName)
        where TConsumer : StepConsumer<T> where T : class
    {
        bus.AddOptions<DurableStepOptions>().BindConfiguration(DurableStepOptions.Section);
        bus.TryAddSingleton(sp =>
        {
            var configuration = sp.GetRequiredService<IConfiguration>();
            var cs = configuration.GetConnectionString(LsvcrBus.RunsConnection) is { Length: > 0 } value ? value
                : throw new LsvcrException($"no ConnectionStrings:{LsvcrBus.RunsConnection} configured (an Azure Storage connection string for the " +
                                           "durable step records; the AppHost provides it)");
            return new StepJobTable(new TableServiceClient(cs).GetTableClient(sp.GetRequiredService<IOptions<DurableStepOptions>>().Value.Table));
        });
        bus.TryAddScoped<TConsumer>();
        bus.AddConsumer<DurableStepConsumer<TConsumer, T>, StepConsumerDefinition<DurableStepConsumer<TConsumer, T>>>()
            .Endpoint(e => e.Name = endpointName);
        bus.AddHostedService<DurableStepWorker<TConsumer, T>>();
    }

    internal static string Partition<T>() => typeof(T).Name;
}

/// <summary>Records a delivered step as a job and acknowledges at once (the worker runs it).</summary>
public sealed class DurableStepConsumer<TConsumer, T>(StepJobTable jobs, TConsumer step, ILogger<DurableStepConsumer<TConsumer, T>> logger) : IConsumer<T>
    where TConsumer : StepConsumer<T> where T : class
{
    public async Task Consume(ConsumeContext<T> context)
    {
        var (runId, key, name) = step.Describe(context.Message);
        var outcome = await jobs.EnqueueAsync(DurableSteps.Partition<T>(), key, JsonSerializer.Serialize(context.Message, StepJobTable.Json),
            Activity.Current?.Id, context.CancellationToken);
        logger.LogInformation("{Step} of run {RunId} ({StepKey}): job {Outcome}", name, runId, key, outcome);
    }
}

/// <summary>Claims and runs durable jobs of one message type, one at a time, with a heartbeat on the claim.</summary>
public sealed class DurableStepWorker<TConsumer, T>(StepJobTable jobs, IServiceScopeFactory scopes, IBus bus, IOptions<DurableStepOptions> options,
    ILogger<DurableStepWorker<TConsumer, T>> logger) : BackgroundService
    where TConsumer : StepConsumer<T> where T : class
{
    private static readonly ActivitySource Source = new("LSVCR.Steps");
    private readonly string owner = $"{Environment.MachineName}-{Environment.ProcessId}-{Guid.NewGuid().ToString("N")[..8]}";

    protected override async Task ExecuteAsync(CancellationToken stopping)
    {
        var o = options.Value;
        var lease = TimeSpan.FromSeconds(o.LeaseSeconds);
        while (!stopping.IsCancellationRequested)
        {
            try
            {
                if (await jobs.TryClaimAsync(DurableSteps.Partition<T>(), owner, lease, stopping) is { } job) await RunAsync(job, lease, o.MaxAttempts, stopping);
                else await Task.Delay(TimeSpan.FromSeconds(o.PollSeconds), stopping);
            }
            catch (OperationCanceledException) when (stopping.IsCancellationRequested) { }
            catch (Exception e)
            {
                // One bad record or a storage hiccup never stops the worker.
                logger.LogError(e, "durable {Type} worker: {Message}", typeof(T).Name, e.Message);
                await Task.Delay(TimeSpan.FromSeconds(o.PollSeconds), stopping).ContinueWith(_ => { });
            }
        }
    }

    private async Task RunAsync(StepJob job, TimeSpan lease, int maxAttempts, CancellationToken stopping)
    {
        var message = JsonSerializer.Deserialize<T>(job.Message, StepJobTable.Json)
                      ?? throw new LsvcrException($"{job.Key}: empty job message");
        using var scope = scopes.CreateScope();
        var step = scope.ServiceProvider.GetRequiredService<TConsumer>();
        var (runId, key, name) = step.Describe(message);
        using var activity = Source.StartActivity($"{name} (durable)", ActivityKind.Consumer, job.TraceParent);
        activity?.SetTag("lsvcr.step_key", key);
        activity?.SetTag("lsvcr.attempt", job.Attempts);
        using var lost = CancellationTokenSource.CreateLinkedTokenSource(stopping);
        var heartbeat = HeartbeatAsync(job, lease, lost);
        logger.LogInformation("{Step} of run {RunId}: claimed job {StepKey} (attempt {Attempt})", name, runId, key, job.Attempts);
        try
        {
            await step.RunDetachedAsync(message, bus, lost.Token);
            await lost.CancelAsync(); // stop the heartbeat before the record changes hands
            await heartbeat;
            await jobs.FinishAsync(job, DurableSteps.Completed, CancellationToken.None);
            logger.LogInformation("{Step} of run {RunId}: job {StepKey} completed", name, runId, key);
        }
        catch (OperationCanceledException) when (lost.IsCancellationRequested)
        {
            await heartbeat;
            if (stopping.IsCancellationRequested)
            {
                // Shutting down: hand the job back at once rather than after the lease.
                await jobs.FinishAsync(job, DurableSteps.Pending, CancellationToken.None);
                logger.LogWarning("{Step} of run {RunId}: stopped, job {StepKey} handed back", name, runId, key);
            }
            else logger.LogWarning("{Step} of run {RunId}: lost the claim on job {StepKey} (another instance took it over)", name, runId, key);
        }
        catch (Exception e)
        {
            await lost.CancelAsync();
            await heartbeat;
            // Non-transient failures became StepFailed inside RunDetachedAsync; this is a transient fault.
            if (job.Attempts >= maxAttempts)
            {
                logger.LogError(e, "{Step} of run {RunId}: job {StepKey} failed {Attempts} times, giving up", name, runId, key, job.Attempts);
                await bus.Publish(new StepFailed(runId, key, name, ErrorKind.Transient, $"{e.GetType().Name}: {e.Message} (after {job.Attempts} attempts)"),
                    CancellationToken.None);
                await jobs.FinishAsync(job, DurableSteps.Failed, CancellationToken.None);
            }
            else
            {
                logger.LogWarning(e, "{Step} of run {RunId}: job {StepKey} attempt {Attempt} failed, to be retried", name, runId, key, job.Attempts);
                await jobs.FinishAsync(job, DurableSteps.Pending, CancellationToken.None);
            }
        }
    }

    /// <summary>Renews the claim every third of the lease; cancels the run when the claim was lost.</summary>
    private async Task HeartbeatAsync(StepJob job, TimeSpan lease, CancellationTokenSource lost)
    {
        try
        {
            while (!lost.IsCancellationRequested)
            {
                await Task.Delay(lease / 3, lost.Token);
                if (!await jobs.RenewAsync(job, lease, lost.Token))
                {
                    await lost.CancelAsync();
                    return;
                }
            }
        }
        catch (OperationCanceledException) { }
        catch (Exception e)
        {
            // A storage hiccup: keep running; the next beat tries again (the lease is three beats long).
            logger.LogWarning(e, "heartbeat of job {StepKey}: {Message}", job.Key, e.Message);
            if (!lost.IsCancellationRequested) await HeartbeatAsync(job, lease, lost);
        }
    }
}

/// <summary>One job record as its claimant holds it (the ETag of its last write).</summary>
public sealed class StepJob
{
    public required string Partition { get; init; }
    public required string Key { get; init; }
    public required string Message { get; init; }
    public string? TraceParent { get; init; }
    public int Attempts { get; init; }
    public ETag ETag { get; set; }
}

/// <summary>The job records: one entity per step (partition = message type, row = step key).</summary>
public sealed class StepJobTable(TableClient table)
{
    internal static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);
    private int created;

    private async Task EnsureTableAsync(CancellationToken ct)
    {
        if (Volatile.Read(ref created) == 1) return;
        await table.CreateIfNotExistsAsync(ct);
        Volatile.Write(ref created, 1);
    }

    /// <summary>Adds the job as pending; a job already there stays as it is unless it had ended, when it runs again.</summary>
    public async Task<string> EnqueueAsync(string partition, string key, string message, string? traceParent, CancellationToken ct)
    {
        await EnsureTableAsync(ct);
        var entity = new TableEntity(partition, key)
        {
            ["Status"] = DurableSteps.Pending, ["Message"] = message, ["TraceParent"] = traceParent, ["Attempts"] = 0,
            ["LeaseUntil"] = DateTimeOffset.UtcNow,
        };
        try
        {
            await table.AddEntityAsync(entity, ct);
            return "recorded";
        }
        catch (RequestFailedException e) when (e.Status == 409)
        {
            var existing = (await table.GetEntityAsync<TableEntity>(partition, key, cancellationToken: ct)).Value;
            var status = existing.GetString("Status");
            if (status is DurableSteps.Pending or DurableSteps.Running) return $"already {status.ToLowerInvariant()} (duplicate delivery)";
            existing["Status"] = DurableSteps.Pending;
            existing["Attempts"] = 0;
            try { await table.UpdateEntityAsync(existing, existing.ETag, TableUpdateMode.Replace, ct); }
            catch (RequestFailedException c) when (c.Status == 412) { return "taken again by a concurrent delivery"; }
            return $"was {status?.ToLowerInvariant()}, queued again (republishes its result)";
        }
    }

    /// <summary>Claims one pending job, or a running one whose lease has run out; null when there is none to take.</summary>
    public async Task<StepJob?> TryClaimAsync(string partition, string owner, TimeSpan lease, CancellationToken ct)
    {
        await EnsureTableAsync(ct);
        var now = DateTimeOffset.UtcNow;
        var filter = TableClient.CreateQueryFilter(
            $"PartitionKey eq {partition} and (Status eq {DurableSteps.Pending} or (Status eq {DurableSteps.Running} and LeaseUntil lt {now}))");
        await foreach (var candidate in table.QueryAsync<TableEntity>(filter, cancellationToken: ct))
        {
            int attempts = (candidate.GetInt32("Attempts") ?? 0) + 1;
            candidate["Status"] = DurableSteps.Running;
            candidate["Owner"] = owner;
            candidate["Attempts"] = attempts;
            candidate["LeaseUntil"] = now + lease;
            try
            {
                var response = await table.UpdateEntityAsync(candidate, candidate.ETag, TableUpdateMode.Replace, ct);
                return new StepJob
                {
                    Partition = partition, Key = candidate.RowKey, Message = candidate.GetString("Message"),
                    TraceParent = candidate.GetString("TraceParent"), Attempts = attempts, ETag = response.Headers.ETag ?? default,
                };
            }
            catch (RequestFailedException e) when (e.Status == 412) { } // another instance claimed it first
        }
        return null;
    }

    /// <summary>Extends the claim; false when the record changed meanwhile (another instance took the job over).</summary>
    public async Task<bool> RenewAsync(StepJob job, TimeSpan lease, CancellationToken ct)
    {
        var patch = new TableEntity(job.Partition, job.Key) { ["LeaseUntil"] = DateTimeOffset.UtcNow + lease };
        try
        {
            var response = await table.UpdateEntityAsync(patch, job.ETag, TableUpdateMode.Merge, ct);
            job.ETag = response.Headers.ETag ?? default;
            return true;
        }
        catch (RequestFailedException e) when (e.Status is 412 or 404) { return false; }
    }

    /// <summary>Ends the claim with <paramref name="status"/> (completed, failed, or pending to be run again), if still held.</summary>
    public async Task FinishAsync(StepJob job, string status, CancellationToken ct)
    {
        var patch = new TableEntity(job.Partition, job.Key) { ["Status"] = status, ["Owner"] = "", ["LeaseUntil"] = DateTimeOffset.UtcNow };
        try { job.ETag = (await table.UpdateEntityAsync(patch, job.ETag, TableUpdateMode.Merge, ct)).Headers.ETag ?? default; }
        catch (RequestFailedException e) when (e.Status is 412 or 404) { }
    }

    /// <summary>Status and attempts of a job (tests and diagnostics).</summary>
    public async Task<(string Status, int Attempts)?> GetAsync(string partition, string key, CancellationToken ct = default)
    {
        await EnsureTableAsync(ct);
        var entity = await table.GetEntityIfExistsAsync<TableEntity>(partition, key, cancellationToken: ct);
        return entity.HasValue ? (entity.Value!.GetString("Status"), entity.Value.GetInt32("Attempts") ?? 0) : null;
    }
}
