using LSVCR.Artifacts;
using LSVCR.Contracts;
using LSVCR.Orchestration.Messaging;
using LSVCR.Serving;
using MassTransit;
using Microsoft.Extensions.Options;

namespace LSVCR.Serving.Api;

/// <summary>
/// Installs a published bundle: downloads its artifact set (each file verified against the store's manifest, into the
/// artifact cache), copies it into <see cref="ServingOptions.BundleRoot"/>/{version} (staged under a dot-folder and
/// moved, so the watcher never sees half a bundle, and pin / rollback find it later), then runs the engine's hot swap
/// (verify against the bundle manifest, load, warm up, atomic swap; a bundle that fails keeps the old model).
/// </summary>
public sealed class BundleInstaller(IArtifactStore store, RecommendationEngine engine, IOptions<ServingOptions> options, ILogger<BundleInstaller> log)
{
    // The consumer and the store poll may install the same bundle at once: one at a time, so neither replaces a folder
    // the other just installed (and the engine may be loading).
    private readonly SemaphoreSlim installing = new(1, 1);

    public async Task<(bool Swapped, string? Error)> InstallAsync(ArtifactSetReference bundle, string version, CancellationToken ct)
    {
        await installing.WaitAsync(ct);
        try { return await InstallOnceAsync(bundle, version, ct); }
        finally { installing.Release(); }
    }

    private async Task<(bool Swapped, string? Error)> InstallOnceAsync(ArtifactSetReference bundle, string version, CancellationToken ct)
    {
        if (engine.Status()?.Version == version) return (true, null);
        var root = options.Value.BundleRoot;
        var target = Path.Combine(root, SafeName(version));
        if (!File.Exists(Path.Combine(target, BundleManifest.FileName)))
        {
            var set = await store.OpenAsync(bundle, ct);
            var staging = Path.Combine(root, $".{SafeName(version)}.{Guid.NewGuid():N}");
            Directory.CreateDirectory(staging);
            try
            {
                // The bundle manifest last: a folder with a manifest is complete.
                foreach (var file in set.Manifest.Files.OrderBy(f => f.Path == BundleManifest.FileName ? 1 : 0))
                {
                    var to = Path.Combine(staging, file.Path.Replace('/', Path.DirectorySeparatorChar));
                    Directory.CreateDirectory(Path.GetDirectoryName(to)!);
                    File.Copy(set.PathOf(file.Path), to);
                }
                if (Directory.Exists(target)) Directory.Delete(target, recursive: true); // an earlier copy without its manifest
                Directory.Move(staging, target);
            }
            finally
            {
                if (Directory.Exists(staging)) Directory.Delete(staging, recursive: true);
            }
            log.LogInformation("Bundle {Version} downloaded from {Store}:{Set} into {Dir}", version, bundle.Store, bundle.Set, target);
        }
        var claimed = BundleManifest.Read(target).ModelVersion;
        if (claimed != version)
        {
            log.LogError("Bundle {Set} holds model {Claimed}, the message says {Version}: not loaded", bundle.Set, claimed, version);
            return (false, $"{bundle.Store}:{bundle.Set} holds model {claimed}, not {version}");
        }
        if (engine.Pinned is { } pin && pin != version)
        {
            log.LogInformation("Bundle {Version} is installed but not loaded: version {Pin} is pinned", version, pin);
            return (false, $"version {pin} is pinned");
        }
        return await engine.LoadAsync(target, ct);
    }

    private static string SafeName(string version) =>
        version.Length > 0 && version.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_') ? version
            : throw new LsvcrException($"model version \"{version}\" is not a folder name (letters, digits, '-', '_')");
}

/// <summary>
/// <see cref="ModelPublished"/> → <see cref="BundleInstaller"/>. Every serving instance has a queue of its own (a
/// temporary one, named with the instance), so each of them swaps; download faults are retried, a bundle that fails
/// to load is reported by the engine (<c>/v1/model</c> <c>last_error</c>) and not retried.
/// </summary>
public sealed class ModelPublishedConsumer(BundleInstaller installer, ILogger<ModelPublishedConsumer> log) : IConsumer<ModelPublished>
{
    public async Task Consume(ConsumeContext<ModelPublished> context)
    {
        var m = context.Message;
        log.LogInformation("Model {Version} of run {Run} published ({Store}:{Set})", m.ModelVersion, m.RunId, m.Bundle.Store, m.Bundle.Set);
        var (swapped, error) = await installer.InstallAsync(m.Bundle, m.ModelVersion, context.CancellationToken);
        if (!swapped) log.LogWarning("Model {Version} is not serving: {Error}", m.ModelVersion, error);
    }
}

/// <summary>
/// The fallback to <see cref="ModelPublished"/>: reads the store's <see cref="ServingBundlePointer"/> every
/// <see cref="ServingOptions.StorePollInterval"/> (first at start) and installs the bundle it names when that differs from
/// the last one handled. An instance that was down at publish time thus catches up within one interval. A bundle that
/// fails to download or load is not retried until the pointer moves; a transient store fault is retried at the next poll.
/// </summary>
internal sealed class StorePointerWatcher(IArtifactStore store, BundleInstaller installer, IOptions<ServingOptions> options, ILogger<StorePointerWatcher> log) : BackgroundService
{
    private string? handled; // content hash of the last target installed or refused

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var name = options.Value.StorePointer;
        while (!stoppingToken.IsCancellationRequested)
        {
            try { await PollOnceAsync(name, stoppingToken); }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested) { return; }
            catch (LsvcrException e) when (e.Kind == ErrorKind.Transient) { log.LogWarning("Reading pointer {Store}:{Name} failed, retrying next poll: {Error}", store.Name, name, e.Message); }
            catch (Exception e) { log.LogError(e, "Polling pointer {Store}:{Name} failed", store.Name, name); }
            try { await Task.Delay(options.Value.StorePollInterval, stoppingToken); }
            catch (OperationCanceledException) { return; }
        }
    }

    private async Task PollOnceAsync(string name, CancellationToken ct)
    {
        if (await ServingBundlePointer.TryReadAsync(store, name, ct) is not var (bundle, version) || bundle.ContentSha256 == handled) return;
        log.LogInformation("Pointer {Store}:{Name} names model {Version} ({Set})", store.Name, name, version, bundle.Set);
        try
        {
            var (swapped, error) = await installer.InstallAsync(bundle, version, ct);
            if (!swapped) log.LogWarning("Model {Version} from pointer {Name} is not serving: {Error}", version, name, error);
        }
        catch (LsvcrException e) when (e.Kind != ErrorKind.Transient)
        {
            // Missing, corrupt or conflicting set: retrying the same target cannot help.
            log.LogError("Model {Version} from pointer {Name} could not be installed, keeping the current model: {Error}", version, name, e.Message);
        }
        handled = bundle.ContentSha256;
    }
}

public static class ServingBus
{
    /// <summary>With an artifact store configured (<c>ConnectionStrings:artifacts</c> or the <c>Artifacts</c> section): the
    /// installer and the poll of the store's bundle pointer. With <c>ConnectionStrings:bus</c> as well (the AppHost
    /// provides both): the <see cref="ModelPublished"/> consumer. With neither, the service runs on its bundle root alone.</summary>
    public static IServiceCollection AddPublishedBundles(this IServiceCollection services, IConfiguration configuration)
    {
        bool hasBus = !string.IsNullOrWhiteSpace(configuration.GetConnectionString(LsvcrBus.BusConnection));
        var artifacts = configuration.GetSection(ArtifactStoreOptions.Section);
        bool hasStore = hasBus || !string.IsNullOrWhiteSpace(configuration.GetConnectionString(ArtifactStoreOptions.ConnectionName))
                        || !string.IsNullOrWhiteSpace(artifacts[nameof(ArtifactStoreOptions.ConnectionString)])
                        || !string.IsNullOrWhiteSpace(artifacts[nameof(ArtifactStoreOptions.LocalRoot)]);
        if (!hasStore) return services;
        services.AddArtifactStore(configuration);
        services.AddSingleton<BundleInstaller>();
        if (!string.IsNullOrWhiteSpace(configuration[$"{ServingOptions.Section}:{nameof(ServingOptions.StorePointer)}"] ?? ServingBundlePointer.DefaultName))
            services.AddHostedService<StorePointerWatcher>();
        if (!hasBus) return services;
        // The queue and its binding exist before the service counts as started, so no ModelPublished slips past.
        services.Configure<MassTransitHostOptions>(o => { o.WaitUntilStarted = true; o.StartTimeout = TimeSpan.FromMinutes(1); });
        var instance = $"{Environment.MachineName}-{Environment.ProcessId}-{Guid.NewGuid().ToString("N")[..6]}".ToLowerInvariant();
        return services.AddLsvcrBus(configuration, bus =>
            bus.AddConsumer<ModelPublishedConsumer>(c => c.UseMessageRetry(r => r.Interval(5, TimeSpan.FromSeconds(2))))
                .Endpoint(e =>
                {
                    e.Name = $"serving-model-published-{instance}";
                    e.Temporary = true;
                }));
    }
}
