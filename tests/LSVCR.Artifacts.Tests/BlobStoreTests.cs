using Azure.Core;
using Azure.Storage.Blobs;

namespace LSVCR.Artifacts.Tests;

[Collection(AzuriteCollection.Name)]
public sealed class BlobStoreTests(AzuriteFixture azurite) : StoreContract
{
    // One container per test class instance: tests do not see each other's sets.
    private readonly string container = $"t{Guid.NewGuid():N}";

    private BlobContainerClient Client(RequestCounter? counter = null)
    {
        var options = new BlobClientOptions();
        if (counter is not null) options.AddPolicy(counter, HttpPipelinePosition.PerCall);
        return new BlobContainerClient(azurite.Server.ConnectionString, container, options);
    }

    protected override IArtifactStore NewStore(string cacheName = "cache") => new BlobArtifactStore(Client(), new ArtifactCache(Temp.Sub(cacheName)));

    protected override async Task CorruptAsync(ArtifactManifest manifest, string file, byte[] bytes) =>
        await Client().GetBlobClient(manifest.StorePath(file)).UploadAsync(new BinaryData(bytes), overwrite: true);

    protected override async Task<IReadOnlyList<string>> ObjectsAsync(string set)
    {
        var names = new List<string>();
        await foreach (var blob in Client().GetBlobsAsync(Azure.Storage.Blobs.Models.BlobTraits.None, Azure.Storage.Blobs.Models.BlobStates.None, set + "/", default))
            names.Add(blob.Name[(set.Length + 1)..]);
        return names.Order(StringComparer.Ordinal).ToList();
    }

    protected override string[] KillableWriterArgs(string set) => ["blob", azurite.Server.ConnectionString, container, set];

    [Fact]
    public async Task A_second_open_of_a_cached_set_sends_no_request()
    {
        var set = NewSetId();
        var publisher = NewStore();
        await using (var writer = publisher.CreateSet(set, "embeddings"))
        {
            await writer.AddFileAsync("photo_embs.npy", new PatternStream(1_000_000, 11));
            await writer.AddFileAsync("comment_embs.npy", new PatternStream(2_000_000, 12));
            await writer.CommitAsync();
        }
        var reference = (await publisher.TryGetManifestAsync(set))!.ToReference(publisher.Name);

        var counter = new RequestCounter();
        var cache = new ArtifactCache(Temp.Sub("worker-cache"));
        var worker = new BlobArtifactStore(Client(counter), cache);
        var first = await worker.OpenAsync(reference);
        int firstRequests = counter.Total;
        Assert.Equal(3, counter.Gets);  // the manifest and two files
        Assert.True(firstRequests >= 3);

        counter.Reset();
        var second = await worker.OpenAsync(reference);
        Assert.Equal(0, counter.Total);
        Assert.Equal(first.Directory, second.Directory);

        // A restarted worker (new store instance, same cache folder) does not fetch either.
        var restarted = new BlobArtifactStore(Client(counter), new ArtifactCache(cache.Root));
        var third = await restarted.OpenAsync(reference);
        Assert.Equal(0, counter.Total);
        Assert.Equal(PatternStream.Bytes(1_000_000, 11), await File.ReadAllBytesAsync(third.PathOf("photo_embs.npy")));
        Assert.StartsWith(cache.Root, third.Directory);

        // By set id it must read the current manifest (one GET), but no file again.
        counter.Reset();
        await restarted.OpenAsync(set);
        Assert.Equal(1, counter.Gets);
    }

    [Fact]
    public async Task A_file_shared_by_two_sets_is_downloaded_once()
    {
        var store = NewStore();
        var counter = new RequestCounter();
        var worker = new BlobArtifactStore(Client(counter), new ArtifactCache(Temp.Sub("shared-cache")));
        var a = NewSetId();
        var b = NewSetId();
        foreach (var (set, extra) in new[] { (a, "a"), (b, "b") })
        {
            await using var writer = store.CreateSet(set, "dataset");
            await writer.AddFileAsync("catalog.json", new PatternStream(100_000, 21));
            await writer.AddFileAsync("extra.txt", new MemoryStream(System.Text.Encoding.UTF8.GetBytes(extra)));
            await writer.CommitAsync();
        }
        await worker.OpenAsync(a);
        counter.Reset();
        await worker.OpenAsync(b);
        Assert.Equal(2, counter.Gets);  // b's manifest and extra.txt; catalog.json came from the cache
    }
}
