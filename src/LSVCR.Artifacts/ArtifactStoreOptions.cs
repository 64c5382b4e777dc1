using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace LSVCR.Artifacts;

/// <summary>
/// Which store a host uses, from configuration: the connection string named <c>artifacts</c>
/// (<c>ConnectionStrings:artifacts</c>, what Aspire's <c>WithReference</c> provides) or the <c>Artifacts</c> section.
/// An Azure Storage connection string selects blob storage; a folder path (or <c>file://</c> URI) selects the local store.
/// </summary>
public sealed class ArtifactStoreOptions
{
    public const string Section = "Artifacts", ConnectionName = "artifacts";

    /// <summary>Azure Storage connection string, or a local folder. <c>ConnectionStrings:artifacts</c> wins when both are set.</summary>
    public string? ConnectionString { get; set; }

    /// <summary>A local folder for the store when no connection string is given.</summary>
    public string? LocalRoot { get; set; }

    /// <summary>Blob container holding the sets.</summary>
    public string Container { get; set; } = "artifacts";

    /// <summary>Where downloads are cached (default <see cref="ArtifactCache.DefaultRoot"/>).</summary>
    public string? CacheDirectory { get; set; }

    /// <summary>True when <see cref="ConnectionString"/> is an Azure Storage connection string rather than a folder.</summary>
    public static bool IsAzureConnectionString(string value) =>
        value.Contains("UseDevelopmentStorage=true", StringComparison.OrdinalIgnoreCase)
        || value.Contains("AccountName=", StringComparison.OrdinalIgnoreCase)
        || value.Contains("BlobEndpoint=", StringComparison.OrdinalIgnoreCase);

    /// <summary>The problems with these options (empty when usable), each naming the configuration key at fault.</summary>
    public IReadOnlyList<string> Problems()
    {
        var problems = new List<string>();
        if (string.IsNullOrWhiteSpace(ConnectionString) && string.IsNullOrWhiteSpace(LocalRoot))
            problems.Add($"no artifact store configured: set ConnectionStrings:{ConnectionName} (an Azure Storage connection string or a folder) " +
                         $"or {Section}:LocalRoot");
        if (ConnectionString is { } cs && IsAzureConnectionString(cs) && !System.Text.RegularExpressions.Regex.IsMatch(Container, "^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$"))
            problems.Add($"{Section}:Container '{Container}' is not a valid blob container name (3-63 lower-case letters, digits and single hyphens)");
        return problems;
    }
}

public static class ArtifactStores
{
    /// <summary>The store the options describe (the CLI calls this directly; services get it from DI).</summary>
    public static IArtifactStore Create(ArtifactStoreOptions options)
    {
        var problems = options.Problems();
        if (problems.Count > 0) throw new LsvcrException(string.Join("; ", problems));
        var target = string.IsNullOrWhiteSpace(options.ConnectionString) ? options.LocalRoot! : options.ConnectionString!;
        if (ArtifactStoreOptions.IsAzureConnectionString(target))
            return new BlobArtifactStore(target, options.Container, new ArtifactCache(options.CacheDirectory ?? ArtifactCache.DefaultRoot));
        var folder = target.StartsWith("file://", StringComparison.OrdinalIgnoreCase) ? new Uri(target).LocalPath : target;
        return new LocalArtifactStore(folder);
    }

    /// <summary>
    /// Registers <see cref="IArtifactStore"/> (a singleton; once, however often called) from <c>ConnectionStrings:artifacts</c> or the <c>Artifacts</c>
    /// section; the options are validated when the host starts, so a missing store fails start-up with the key to set.
    /// </summary>
    public static IServiceCollection AddArtifactStore(this IServiceCollection services, IConfiguration configuration)
    {
        // Idempotent: every job registration calls it.
        if (services.Any(d => d.ServiceType == typeof(IArtifactStore))) return services;
        services.AddOptions<ArtifactStoreOptions>()
            .Bind(configuration.GetSection(ArtifactStoreOptions.Section))
            .PostConfigure(o =>
            {
                if (configuration.GetConnectionString(ArtifactStoreOptions.ConnectionName) is { Length: > 0 } cs) o.ConnectionString = cs;
            })
            .ValidateOnStart();
        services.AddSingleton<IValidateOptions<ArtifactStoreOptions>, ProblemsValidator>();
        services.AddSingleton(sp => Create(sp.GetRequiredService<IOptions<ArtifactStoreOptions>>().Value));
        return services;
    }

    private sealed class ProblemsValidator : IValidateOptions<ArtifactStoreOptions>
    {
        public ValidateOptionsResult Validate(string? name, ArtifactStoreOptions options) =>
            options.Problems() is { Count: > 0 } p ? ValidateOptionsResult.Fail(p) : ValidateOptionsResult.Success;
    }
}
