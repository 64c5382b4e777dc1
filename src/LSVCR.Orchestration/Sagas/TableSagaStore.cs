using System.Text.Json;
using Azure;
using Azure.Data.Tables;
using MassTransit;

namespace LSVCR.Orchestration.Sagas;

/// <summary>
/// Saga instances in one Azure table (Azurite's table service locally): one entity per instance, partition = the
/// correlation id, the instance as JSON in <c>Data</c> and its state in <c>State</c> (for listings). Writes carry the
/// ETag read with the instance, so of two concurrent updates only the first lands; the second gets a
/// <see cref="ConcurrencyException"/>, and the message is retried against the new state (see
/// <see cref="TableSagaRepository"/>). MassTransit.Azure.Table is not in the feed, hence this small store of our own.
/// </summary>
public sealed class TableSagaStore<TSaga> where TSaga : class, ISaga
{
    private const string RowKey = "saga";
    private readonly TableClient table;
    private readonly Func<TSaga, string?> state;
    private readonly JsonSerializerOptions json;
    private readonly Lazy<Task> created;
    private int conflicts;

    public TableSagaStore(TableClient table, Func<TSaga, string?>? state = null, JsonSerializerOptions? json = null)
    {
        this.table = table;
        this.state = state ?? (_ => null);
        this.json = json ?? new JsonSerializerOptions(JsonSerializerDefaults.Web);
        created = new Lazy<Task>(() => table.CreateIfNotExistsAsync());
    }

    public string TableName => table.Name;

    /// <summary>How many writes lost to a concurrent writer since start (each is retried by the message pipeline).</summary>
    public int Conflicts => Volatile.Read(ref conflicts);

    public async Task<(TSaga Instance, ETag ETag)?> LoadAsync(Guid id, CancellationToken ct = default)
    {
        await created.Value;
        var response = await table.GetEntityIfExistsAsync<TableEntity>(Partition(id), RowKey, cancellationToken: ct);
        if (!response.HasValue || response.Value is not { } entity) return null;
        return (Deserialize(entity), entity.ETag);
    }

    /// <summary>Adds a new instance; a concurrent insert of the same id is a conflict.</summary>
    public async Task<ETag> InsertAsync(TSaga instance, CancellationToken ct = default)
    {
        await created.Value;
        try
        {
            var response = await table.AddEntityAsync(ToEntity(instance), ct);
            return response.Headers.ETag ?? throw new InvalidOperationException("table insert returned no ETag");
        }
        catch (RequestFailedException e) when (e.Status == 409)
        {
            throw Conflict(instance.CorrelationId, "was inserted by another writer", e);
        }
    }

    /// <summary>Replaces the instance if it is still at <paramref name="etag"/>.</summary>
    public async Task<ETag> UpdateAsync(TSaga instance, ETag etag, CancellationToken ct = default)
    {
        try
        {
            var response = await table.UpdateEntityAsync(ToEntity(instance), etag, TableUpdateMode.Replace, ct);
            return response.Headers.ETag ?? throw new InvalidOperationException("table update returned no ETag");
        }
        catch (RequestFailedException e) when (e.Status is 412 or 404)
        {
            throw Conflict(instance.CorrelationId, "changed since it was read", e);
        }
    }

    public async Task DeleteAsync(Guid id, ETag etag, CancellationToken ct = default)
    {
        try { await table.DeleteEntityAsync(Partition(id), RowKey, etag, ct); }
        catch (RequestFailedException e) when (e.Status == 412) { throw Conflict(id, "changed since it was read", e); }
    }

    /// <summary>Every instance (newest first is the caller's business: the table orders by partition).</summary>
    public async IAsyncEnumerable<TSaga> ListAsync([System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken ct = default)
    {
        await created.Value;
        await foreach (var entity in table.QueryAsync<TableEntity>(e => e.RowKey == RowKey, cancellationToken: ct))
            yield return Deserialize(entity);
    }

    private ConcurrencyException Conflict(Guid id, string what, Exception inner)
    {
        Interlocked.Increment(ref conflicts);
        return new ConcurrencyException($"{typeof(TSaga).Name} {id} {what} (table {table.Name})", typeof(TSaga), id, inner);
    }

    private static string Partition(Guid id) => id.ToString("N");

    private TableEntity ToEntity(TSaga instance) => new(Partition(instance.CorrelationId), RowKey)
    {
        ["State"] = state(instance),
        ["Data"] = JsonSerializer.Serialize(instance, json),
    };

    private TSaga Deserialize(TableEntity entity) =>
        JsonSerializer.Deserialize<TSaga>(entity.GetString("Data"), json)
        ?? throw new InvalidOperationException($"{table.Name}/{entity.PartitionKey} holds no {typeof(TSaga).Name}");
}
