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
    public async Task<(bool Swapped, string? Error)> InstallAsync(ArtifactSetReference bundle, string version, CancellationToken ct)
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

public static class ServingBus
{
    /// <summary>With <c>ConnectionStrings:bus</c> (the AppHost provides it and the artifact store's): the
    /// <see cref="ModelPublished"/> consumer. Without, the service runs on its bundle root alone (polled).</summary>
    public static IServiceCollection AddModelPublishedConsumer(this IServiceCollection services, IConfiguration configuration)
    {
        if (string.IsNullOrWhiteSpace(configuration.GetConnectionString(LsvcrBus.BusConnection))) return services;
        services.AddArtifactStore(configuration);
        services.AddSingleton<BundleInstaller>();
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
