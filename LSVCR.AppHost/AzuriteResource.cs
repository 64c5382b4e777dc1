using System.Net.Sockets;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace Aspire.Hosting.ApplicationModel;

/// <summary>
/// npm's <c>azurite</c> (blob, queue and table services) as a local executable. One account, whose key is a generated
/// Aspire parameter; the connection string names the blob and table endpoints, so the same resource is referenced as
/// <c>artifacts</c> (blob store) and <c>runs</c> (saga tables).
/// </summary>
public sealed class AzuriteExecutableResource(string name, string command, string dataDirectory, ParameterResource accountKey)
    : ExecutableResource(name, command, dataDirectory), IResourceWithConnectionString
{
    public const string Account = "lsvcr";
    public ParameterResource AccountKey { get; } = accountKey;
    public EndpointReference Blob => new(this, "blob");
    public EndpointReference Table => new(this, "table");

    public ReferenceExpression ConnectionStringExpression => ReferenceExpression.Create(
        $"DefaultEndpointsProtocol=http;AccountName={Account};AccountKey={AccountKey};" +
        // The loopback IP, not "localhost": the storage clients read the account from the path only for IP-style hosts.
        $"BlobEndpoint=http://127.0.0.1:{Blob.Property(EndpointProperty.Port)}/{Account};" +
        $"TableEndpoint=http://127.0.0.1:{Table.Property(EndpointProperty.Port)}/{Account};");
}

public static class AzuriteExecutableExtensions
{
    public static IResourceBuilder<AzuriteExecutableResource> AddLocalAzurite(this IDistributedApplicationBuilder builder,
        string name, string program, string dataDirectory)
    {
        // 64 letters and digits are valid base64 (a shared key must decode); generated once and kept in user secrets.
        var key = builder.AddParameter($"{name}-key",
            new GenerateParameterDefault { MinLength = 64, Special = false }, secret: true, persist: true);
        Directory.CreateDirectory(dataDirectory);
        var (blob, queue, table) = (RabbitMqExecutableExtensions.FreePort(), RabbitMqExecutableExtensions.FreePort(),
            RabbitMqExecutableExtensions.FreePort());
        var healthKey = $"{name}-ports";
        builder.Services.AddHealthChecks().AddAsyncCheck(healthKey, async ct =>
        {
            foreach (var port in new[] { blob, table })
            {
                try
                {
                    using var client = new TcpClient();
                    await client.ConnectAsync("127.0.0.1", port, ct);
                }
                catch (SocketException e) { return HealthCheckResult.Unhealthy($"port {port}: {e.Message}"); }
            }
            return HealthCheckResult.Healthy();
        });

        var resource = new AzuriteExecutableResource(name, program, dataDirectory, key.Resource);
        return builder.AddResource(resource)
            .WithEndpoint(port: blob, targetPort: blob, name: "blob", scheme: "http", isProxied: false)
            .WithEndpoint(port: table, targetPort: table, name: "table", scheme: "http", isProxied: false)
            .WithEnvironment("AZURITE_ACCOUNTS", ReferenceExpression.Create($"{AzuriteExecutableResource.Account}:{key.Resource}"))
            .WithArgs(
                "--blobHost", "127.0.0.1", "--blobPort", blob.ToString(),
                "--queueHost", "127.0.0.1", "--queuePort", queue.ToString(),
                "--tableHost", "127.0.0.1", "--tablePort", table.ToString(),
                "--location", dataDirectory,
                // Azure.Storage.Blobs 12.30 speaks a newer API version than Azurite announces (SYSTEM.md).
                "--skipApiVersionCheck", "--loose")
            .WithHealthCheck(healthKey);
    }
}
