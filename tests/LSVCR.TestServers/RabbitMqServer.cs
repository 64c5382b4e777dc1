using System.Diagnostics;

namespace LSVCR.TestServers;

/// <summary>
/// A real RabbitMQ node (Debian's <c>rabbitmq-server</c>) of its own: its own node name, AMQP and distribution
/// ports and data folder, configured through the <c>RABBITMQ_*</c> variables (SYSTEM.md). As root the server drops to
/// the <c>rabbitmq</c> user, so the data folder is handed to that user.
/// </summary>
public sealed class RabbitMqServer : LocalServer
{
    private string program = "";
    private Dictionary<string, string> env = [];

    private RabbitMqServer() : base("rabbitmq") { }

    public int AmqpPort { get; private set; }

    /// <summary>The consumer acknowledgement timeout the node was started with.</summary>
    public TimeSpan ConsumerTimeout { get; private set; }

    /// <summary>An AMQP URI for the guest account (loopback only, which is where the node listens).</summary>
    public Uri AmqpUri => new($"amqp://guest:guest@127.0.0.1:{AmqpPort}/");

    public string ConnectionString => AmqpUri.ToString();

    /// <param name="consumerTimeout">RabbitMQ's <c>consumer_timeout</c> (default 30 minutes); fault tests shorten it. A node
    /// checks the timeout on its channel tick (every 60 s by default), so a shortened timeout also gets a 1 s tick
    /// (<c>channel_tick_interval</c> in <c>advanced.config</c>): a delivery is then cancelled about one timeout after it was sent.</param>
    public static async Task<RabbitMqServer> StartAsync(TimeSpan? consumerTimeout = null)
    {
        var server = new RabbitMqServer
        {
            program = Require("rabbitmq-server", "apt-get install rabbitmq-server", "/usr/sbin", "/usr/lib/rabbitmq/bin"),
            AmqpPort = FreePort(),
            ConsumerTimeout = consumerTimeout ?? TimeSpan.FromMinutes(30),
        };
        try
        {
            var dir = server.DataDirectory;
            Directory.CreateDirectory(Path.Combine(dir, "mnesia"));
            Directory.CreateDirectory(Path.Combine(dir, "log"));
            File.WriteAllText(Path.Combine(dir, "enabled_plugins"), "[].\n");
            File.WriteAllText(Path.Combine(dir, "rabbitmq.conf"),
                $"listeners.tcp.default = 127.0.0.1:{server.AmqpPort}\n" +
                $"consumer_timeout = {(long)server.ConsumerTimeout.TotalMilliseconds}\n");
            File.WriteAllText(Path.Combine(dir, "advanced.config"),
                consumerTimeout is null ? "[].\n" : "[{rabbit, [{channel_tick_interval, 1000}]}].\n");
            if (Environment.UserName == "root") GiveToRabbitMqUser(dir);
            server.env = new()
            {
                ["RABBITMQ_NODENAME"] = $"lsvcr-{Path.GetFileName(dir)[^8..]}@localhost",
                ["RABBITMQ_NODE_PORT"] = server.AmqpPort.ToString(),
                ["RABBITMQ_DIST_PORT"] = FreePort().ToString(),
                ["RABBITMQ_MNESIA_BASE"] = Path.Combine(dir, "mnesia"),
                ["RABBITMQ_LOG_BASE"] = Path.Combine(dir, "log"),
                ["RABBITMQ_LOGS"] = "-",
                ["RABBITMQ_CONFIG_FILE"] = Path.Combine(dir, "rabbitmq"),
                ["RABBITMQ_ENABLED_PLUGINS_FILE"] = Path.Combine(dir, "enabled_plugins"),
                ["RABBITMQ_ADVANCED_CONFIG_FILE"] = Path.Combine(dir, "advanced.config"),
            };
            await server.StartNodeAsync();
            return server;
        }
        catch
        {
            await server.DisposeAsync();
            throw;
        }
    }

    /// <summary>Starts the node again after <see cref="LocalServer.Kill"/> (a broker restart): same ports and data.</summary>
    public Task RestartAsync()
    {
        Kill();
        return StartNodeAsync();
    }

    private async Task StartNodeAsync()
    {
        StartProcess(program, [], env);
        await WaitForPortsAsync(TimeSpan.FromSeconds(90), AmqpPort);
    }

    private static void GiveToRabbitMqUser(string dir)
    {
        using var chown = Process.Start("chown", ["-R", "rabbitmq:rabbitmq", dir]);
        chown.WaitForExit();
        if (chown.ExitCode != 0) throw new InvalidOperationException($"chown rabbitmq {dir} failed ({chown.ExitCode})");
    }
}
