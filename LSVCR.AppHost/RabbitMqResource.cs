using System.Diagnostics;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace Aspire.Hosting.ApplicationModel;

/// <summary>
/// Debian's <c>rabbitmq-server</c> as a local executable with its own node name, ports and data folder (configured
/// through <c>RABBITMQ_*</c> variables and a <c>rabbitmq.conf</c> the AppHost writes before each start). Its connection
/// string is the AMQP URI of a user created from Aspire parameters on the node's first start.
/// </summary>
public sealed class RabbitMqExecutableResource(string name, string command, string dataDirectory, ParameterResource user, ParameterResource password)
    : ExecutableResource(name, command, dataDirectory), IResourceWithConnectionString
{
    public const string AmqpEndpointName = "amqp";

    public string DataDirectory { get; } = dataDirectory;
    public ParameterResource User { get; } = user;
    public ParameterResource Password { get; } = password;
    public EndpointReference Amqp => new(this, AmqpEndpointName);

    public ReferenceExpression ConnectionStringExpression => ReferenceExpression.Create(
        $"amqp://{User}:{Password}@127.0.0.1:{Amqp.Property(EndpointProperty.Port)}/"); // the node listens on loopback only
}

public static class RabbitMqExecutableExtensions
{
    /// <summary>
    /// Adds a RabbitMQ node run from <paramref name="program"/>. Ports are chosen at start-up (loopback only), the
    /// consumer acknowledgement timeout is <paramref name="consumerTimeout"/> (see docs/distributed.md, long steps).
    /// </summary>
    public static IResourceBuilder<RabbitMqExecutableResource> AddLocalRabbitMq(this IDistributedApplicationBuilder builder,
        string name, string program, string dataDirectory, TimeSpan consumerTimeout)
    {
        var user = builder.AddParameter($"{name}-user", "lsvcr");
        var password = builder.AddParameter($"{name}-password",
            new GenerateParameterDefault { MinLength = 24, Special = false }, secret: true, persist: true);
        Directory.CreateDirectory(dataDirectory);
        var amqpPort = FreePort();
        var distPort = FreePort();
        var resource = new RabbitMqExecutableResource(name, program, dataDirectory, user.Resource, password.Resource);
        // Erlang node names are unique per host: two AppHosts (two checkouts, parallel test runs) each need their own,
        // stable for a data folder so that its node database is found again after a restart.
        var node = $"lsvcr-{name}-{Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(Path.GetFullPath(dataDirectory))))[..8]}@localhost";
        var healthKey = $"{name}-amqp";
        builder.Services.AddHealthChecks().AddAsyncCheck(healthKey, ct => AmqpAnswersAsync(amqpPort, ct));

        return builder.AddResource(resource)
            // Not proxied: the node itself listens on the port the connection string names (DCP's proxy would add a hop
            // that survives a broker restart and hides it from clients).
            .WithEndpoint(port: amqpPort, targetPort: amqpPort, name: RabbitMqExecutableResource.AmqpEndpointName,
                scheme: "amqp", isProxied: false)
            .WithEnvironment("RABBITMQ_NODENAME", node)
            .WithEnvironment("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .WithEnvironment("RABBITMQ_NODE_PORT", amqpPort.ToString())
            .WithEnvironment("RABBITMQ_DIST_PORT", distPort.ToString())
            .WithEnvironment("RABBITMQ_MNESIA_BASE", Path.Combine(dataDirectory, "mnesia"))
            .WithEnvironment("RABBITMQ_LOG_BASE", Path.Combine(dataDirectory, "log"))
            .WithEnvironment("RABBITMQ_LOGS", "-")
            .WithEnvironment("RABBITMQ_CONFIG_FILE", Path.Combine(dataDirectory, "rabbitmq"))
            .WithEnvironment("RABBITMQ_ENABLED_PLUGINS_FILE", Path.Combine(dataDirectory, "enabled_plugins"))
            .WithHealthCheck(healthKey)
            .OnBeforeResourceStarted(async (r, _, ct) =>
            {
                var userName = await r.User.GetValueAsync(ct) ?? "lsvcr";
                var secret = await r.Password.GetValueAsync(ct) ?? throw new InvalidOperationException($"parameter {name}-password has no value");
                WriteConfiguration(r.DataDirectory, amqpPort, consumerTimeout, userName, secret);
            });
    }

    private static void WriteConfiguration(string dir, int port, TimeSpan consumerTimeout, string user, string password)
    {
        var mnesia = Path.Combine(dir, "mnesia");
        // default_user only takes effect on an empty database: when the credentials changed (new user secrets), start
        // from a new node database rather than one that would reject them. Only the hash is kept on disk.
        var stamp = Path.Combine(dir, "credentials.sha256");
        var hash = Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(user + "\n" + password)));
        if (!File.Exists(stamp) || File.ReadAllText(stamp) != hash)
        {
            if (Directory.Exists(mnesia)) Directory.Delete(mnesia, recursive: true);
            File.WriteAllText(stamp, hash);
        }
        Directory.CreateDirectory(mnesia);
        Directory.CreateDirectory(Path.Combine(dir, "log"));
        File.WriteAllText(Path.Combine(dir, "enabled_plugins"), "[].\n");
        var config = Path.Combine(dir, "rabbitmq.conf");
        File.WriteAllText(config,
            $"listeners.tcp.default = 127.0.0.1:{port}\n" +
            $"consumer_timeout = {(long)consumerTimeout.TotalMilliseconds}\n" +
            $"default_user = {user}\n" +
            $"default_pass = {password}\n" +
            "loopback_users.guest = true\n");
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(config, UnixFileMode.UserRead | UnixFileMode.UserWrite); // it holds the password
        // As root the server drops to the rabbitmq user (SYSTEM.md), which must own its data folder.
        if (Environment.UserName == "root")
        {
            using var chown = Process.Start("chown", ["-R", "rabbitmq:rabbitmq", dir]);
            chown.WaitForExit();
        }
    }

    /// <summary>Healthy once the node answers the AMQP 0-9-1 protocol header with its Connection.Start frame.</summary>
    private static async Task<HealthCheckResult> AmqpAnswersAsync(int port, CancellationToken ct)
    {
        try
        {
            using var client = new TcpClient();
            await client.ConnectAsync("127.0.0.1", port, ct);
            var stream = client.GetStream();
            await stream.WriteAsync("AMQP\0\0\u0009\u0001"u8.ToArray(), ct);
            var frame = new byte[1];
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
            timeout.CancelAfter(TimeSpan.FromSeconds(5));
            var read = await stream.ReadAsync(frame, timeout.Token);
            return read == 1 && frame[0] == 1 ? HealthCheckResult.Healthy() : HealthCheckResult.Unhealthy("no AMQP method frame");
        }
        catch (Exception e) when (e is SocketException or IOException or OperationCanceledException)
        {
            return HealthCheckResult.Unhealthy(e.Message);
        }
    }

    internal static int FreePort()
    {
        using var listener = new TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        return ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
    }
}
