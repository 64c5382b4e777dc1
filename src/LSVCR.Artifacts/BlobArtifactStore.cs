using System.Buffers;
using System.Security.Cryptography;
using Azure;
using Azure.Storage.Blobs;
using Azure.Storage.Blobs.Models;
using Azure.Storage.Blobs.Specialized;

namespace LSVCR.Artifacts;

/// <summary>
/// Artifact sets in an Azure Blob Storage container (Azurite locally). Blob storage has no rename, so nothing relies on
/// one: a file is uploaded as staged blocks and committed as a block blob only once every block is up (a killed
/// writer leaves uncommitted blocks, which are not a blob); the manifest is one Put Blob with <c>If-None-Match: *</c>,
/// so it appears whole, once. Downloads go through the <see cref="ArtifactCache"/>.
/// </summary>
public sealed class BlobArtifactStore : ArtifactStore
{
    public const string StoreName = "azure-blob";
    /// <summary>Bytes per staged block: one buffer of this size per upload, whatever the file size.</summary>
    public const int BlockSize = 8 << 20;

    private readonly BlobContainerClient container;
    private readonly Lazy<Task> created;

    public BlobArtifactStore(BlobContainerClient container, ArtifactCache cache)
    {
        this.container = container;
        Cache = cache;
        created = new Lazy<Task>(() => Call(() => container.CreateIfNotExistsAsync()));
    }

    public BlobArtifactStore(string connectionString, string containerName, ArtifactCache cache, BlobClientOptions? options = null)
        : this(new BlobContainerClient(connectionString, containerName, options ?? new BlobClientOptions()), cache) { }

    public ArtifactCache Cache { get; }
    public override string Name => StoreName;

    private async Task<BlobContainerClient> Container()
    {
        await created.Value;
        return container;
    }

    protected internal override async Task<(string Sha256, long Size)> UploadAsync(string storePath, Stream content, CancellationToken ct)
    {
        var blob = (await Container()).GetBlockBlobClient(storePath);
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = ArrayPool<byte>.Shared.Rent(BlockSize);
        var blocks = new List<string>();
        long size = 0;
        try
        {
            while (true)
            {
                int filled = 0, n;
                while (filled < BlockSize && (n = await content.ReadAsync(buffer.AsMemory(filled, BlockSize - filled), ct)) > 0) filled += n;
                if (filled == 0) break;
                hash.AppendData(buffer, 0, filled);
                size += filled;
                // Block ids must have one length within a blob.
                var id = Convert.ToBase64String(System.Text.Encoding.ASCII.GetBytes($"block-{blocks.Count:D8}"));
                using var chunk = new MemoryStream(buffer, 0, filled, writable: false);
                await Call(() => blob.StageBlockAsync(id, chunk, new BlockBlobStageBlockOptions(), ct));
                blocks.Add(id);
                if (filled < BlockSize) break;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
        await Call(() => blob.CommitBlockListAsync(blocks, new CommitBlockListOptions(), ct));
        return (Convert.ToHexStringLower(hash.GetHashAndReset()), size);
    }

    protected internal override async Task<bool> TryCreateAsync(string storePath, byte[] content, CancellationToken ct)
    {
        var blob = (await Container()).GetBlobClient(storePath);
        try
        {
            await blob.UploadAsync(new BinaryData(content), new BlobUploadOptions
            {
                Conditions = new BlobRequestConditions { IfNoneMatch = ETag.All },
                HttpHeaders = new BlobHttpHeaders { ContentType = "application/json" },
            }, ct);
            return true;
        }
        catch (RequestFailedException e) when (e.Status == 409 || e.ErrorCode == BlobErrorCode.BlobAlreadyExists)
        {
            return false;
        }
        catch (RequestFailedException e)
        {
            throw Wrap(e);
        }
    }

    protected internal override async Task PutAsync(string storePath, byte[] content, CancellationToken ct)
    {
        // One Put Blob (small objects only): the blob is replaced whole.
        var blob = (await Container()).GetBlobClient(storePath);
        await Call(() => blob.UploadAsync(new BinaryData(content), new BlobUploadOptions
        {
            HttpHeaders = new BlobHttpHeaders { ContentType = "application/json" },
        }, ct));
    }

    protected internal override async Task<byte[]?> TryReadAllAsync(string storePath, CancellationToken ct)
    {
        var blob = (await Container()).GetBlobClient(storePath);
        try
        {
            var result = await blob.DownloadContentAsync(ct);
            return result.Value.Content.ToArray();
        }
        catch (RequestFailedException e) when (e.Status == 404)
        {
            return null;
        }
        catch (RequestFailedException e)
        {
            throw Wrap(e);
        }
    }

    protected internal override async Task DeleteObjectAsync(string storePath, CancellationToken ct) =>
        await Call(() => container.GetBlobClient(storePath).DeleteIfExistsAsync(DeleteSnapshotsOption.IncludeSnapshots, cancellationToken: ct));

    protected internal override async Task DeletePrefixAsync(string prefix, CancellationToken ct)
    {
        var c = await Container();
        try
        {
            await foreach (var item in c.GetBlobsAsync(BlobTraits.None, BlobStates.None, prefix, ct))
                await c.GetBlobClient(item.Name).DeleteIfExistsAsync(DeleteSnapshotsOption.IncludeSnapshots, cancellationToken: ct);
        }
        catch (RequestFailedException e)
        {
            throw Wrap(e);
        }
    }

    public override async Task<ArtifactManifest> GetManifestAsync(ArtifactSetReference reference, CancellationToken ct = default)
    {
        // Sets are immutable, so a manifest cached under its content hash is the manifest: no request.
        if (Cache.TryGetManifest(reference.ContentSha256) is { } cached && cached.Set == reference.Set) return cached;
        var manifest = await base.GetManifestAsync(reference, ct);
        Cache.AddManifest(manifest);
        return manifest;
    }

    protected override void Remember(ArtifactManifest manifest) => Cache.AddManifest(manifest);

    protected override async Task<string> MaterializeAsync(ArtifactManifest manifest, CancellationToken ct)
    {
        foreach (var file in manifest.Files)
            if (Cache.TryGetObject(file.Sha256, file.Size) is null)
                await DownloadAsync(manifest.StorePath(file.Path), file.Sha256, file.Size, Where(Name, manifest, file), ct);
        return Cache.MaterializeSet(manifest);
    }

    public override async Task<string> GetFileAsync(ArtifactReference file, CancellationToken ct = default)
    {
        CheckStore(file.Store);
        return Cache.TryGetObject(file.Sha256, file.Size) ?? await DownloadAsync(file.Path, file.Sha256, file.Size, $"{Name}:{file.Path}", ct);
    }

    private async Task<string> DownloadAsync(string storePath, string sha256, long size, string where, CancellationToken ct)
    {
        var blob = (await Container()).GetBlobClient(storePath);
        try
        {
            // One streaming GET per file: bytes go to the cache as they arrive, hashed on the way.
            var response = await blob.DownloadStreamingAsync(new BlobDownloadOptions(), ct);
            await using var stream = response.Value.Content;
            return await Cache.AddObjectAsync(stream, sha256, size, where, ct);
        }
        catch (RequestFailedException e) when (e.Status == 404)
        {
            throw new ArtifactCorruptException($"{where}: listed in the manifest but the blob {storePath} is missing");
        }
        catch (RequestFailedException e)
        {
            throw Wrap(e);
        }
        catch (IOException e)
        {
            throw new LsvcrException($"{where}: download interrupted ({e.Message})", e, ErrorKind.Transient);
        }
    }

    private async Task Call(Func<Task> action)
    {
        try { await action(); }
        catch (RequestFailedException e) { throw Wrap(e); }
    }

    private LsvcrException Wrap(RequestFailedException e)
    {
        // 408/429/5xx and connection failures (status 0) may pass if retried; the rest (auth, bad request) will not.
        bool transient = e.Status is 0 or 408 or 429 or >= 500;
        return new LsvcrException($"{Name} ({container.Uri}): {e.Status} {e.ErrorCode}: {e.Message.Split('\n')[0]}", e,
            transient ? ErrorKind.Transient : ErrorKind.Internal);
    }
}
