namespace LSVCR.TestServers;

/// <summary>A real Azurite (npm's <c>azurite</c>: blob, queue and table services) on free ports.</summary>
public sealed class AzuriteServer : LocalServer
{
    // Azurite's published development account (not a secret: every Azurite accepts it).
    private const string AccountKey = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    private AzuriteServer() : base("azurite") { }

    public int BlobPort { get; private set; }
    public int QueuePort { get; private set; }
    public int TablePort { get; private set; }

    /// <summary>A connection string for Azure.Storage.Blobs and Azure.Data.Tables clients.</summary>
    public string ConnectionString =>
        $"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AccountKey};" +
        $"BlobEndpoint=http://127.0.0.1:{BlobPort}/devstoreaccount1;" +
        $"QueueEndpoint=http://127.0.0.1:{QueuePort}/devstoreaccount1;" +
        $"TableEndpoint=http://127.0.0.1:{TablePort}/devstoreaccount1;";

    public static async Task<AzuriteServer> StartAsync()
    {
        var program = Require("azurite", "npm install -g azurite", "/usr/local/bin", "/usr/bin");
        var server = new AzuriteServer { BlobPort = FreePort(), QueuePort = FreePort(), TablePort = FreePort() };
        try
        {
            server.StartProcess(program,
            [
                "--blobHost", "127.0.0.1", "--blobPort", server.BlobPort.ToString(),
                "--queueHost", "127.0.0.1", "--queuePort", server.QueuePort.ToString(),
                "--tableHost", "127.0.0.1", "--tablePort", server.TablePort.ToString(),
                "--location", server.DataDirectory, "--skipApiVersionCheck", "--silent", "--loose",
            ]);
            await server.WaitForPortsAsync(TimeSpan.FromSeconds(60), server.BlobPort, server.TablePort);
            return server;
        }
        catch
        {
            await server.DisposeAsync();
            throw;
        }
    }
}
