using Azure.Data.Tables;
using LSVCR.TestServers;

namespace LSVCR.Orchestration.Tests;

/// <summary>One real Azurite for the saga-store tests (each test uses a table of its own).</summary>
public sealed class AzuriteFixture : IAsyncLifetime
{
    public AzuriteServer Server { get; private set; } = null!;

    public async Task InitializeAsync() => Server = await AzuriteServer.StartAsync();
    public async Task DisposeAsync() => await Server.DisposeAsync();

    public TableClient NewTable() => new TableServiceClient(Server.ConnectionString).GetTableClient($"t{Guid.NewGuid():N}");
}

[CollectionDefinition(Name)]
public sealed class AzuriteCollection : ICollectionFixture<AzuriteFixture>
{
    public const string Name = "azurite";
}
