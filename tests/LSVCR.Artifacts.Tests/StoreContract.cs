using System.Security.Cryptography;
using System.Text;

namespace LSVCR.Artifacts.Tests;

/// <summary>The behaviour both stores must have; each store's test class supplies the store and its raw access.</summary>
public abstract class StoreContract : IDisposable
{
    protected readonly TempDir Temp = new();

    /// <summary>A fresh store instance over the same backing storage (what another worker would have).</summary>
    protected abstract IArtifactStore NewStore(string cacheName = "cache");

    /// <summary>Overwrites one published file's bytes behind the store's back.</summary>
    protected abstract Task CorruptAsync(ArtifactManifest manifest, string file, byte[] bytes);

    /// <summary>Paths (relative to the set) of every complete object the backing storage holds for the set.</summary>
    protected abstract Task<IReadOnlyList<string>> ObjectsAsync(string set);

    protected abstract string[] KillableWriterArgs(string set);

    protected static string NewSetId() => $"tests/{Guid.NewGuid():N}";

    private static string Sha(byte[] bytes) => Convert.ToHexStringLower(SHA256.HashData(bytes));

    private async Task<(ArtifactSetReference Ref, Dictionary<string, byte[]> Files)> PublishSampleAsync(IArtifactStore store, string set)
    {
        var files = new Dictionary<string, byte[]>
        {
            ["photo_embs.npy"] = PatternStream.Bytes(300_000, 1),
            ["best/model.safetensors"] = PatternStream.Bytes(70_001, 2),
            ["empty.txt"] = [],
        };
        await using var writer = store.CreateSet(set, "embeddings");
        foreach (var (path, bytes) in files) await writer.AddFileAsync(path, new MemoryStream(bytes));
        var reference = await writer.CommitAsync(new Dictionary<string, string> { ["step_key"] = "abc" });
        return (reference, files);
    }

    [Fact]
    public async Task Round_trip_lists_every_file_with_its_hash_and_reads_back_the_same_bytes()
    {
        var store = NewStore();
        var set = NewSetId();
        var (reference, files) = await PublishSampleAsync(store, set);

        Assert.Equal(store.Name, reference.Store);
        Assert.Equal(set, reference.Set);
        Assert.Equal(3, reference.Files);
        Assert.Equal(370_001, reference.Size);
        var manifest = await store.GetManifestAsync(reference);
        Assert.Equal("embeddings", manifest.Kind);
        Assert.Equal("abc", manifest.Metadata["step_key"]);
        foreach (var (path, bytes) in files)
        {
            Assert.Equal(Sha(bytes), manifest[path].Sha256);
            Assert.Equal(bytes.Length, manifest[path].Size);
        }

        var opened = await NewStore("other-cache").OpenAsync(reference);
        foreach (var (path, bytes) in files) Assert.Equal(bytes, await File.ReadAllBytesAsync(opened.PathOf(path)));
        Assert.Equal(files["best/model.safetensors"], await File.ReadAllBytesAsync(Path.Combine(opened.Directory, "best", "model.safetensors")));

        var single = await NewStore("third-cache").GetFileAsync(manifest.FileReference(store.Name, "photo_embs.npy"));
        Assert.Equal(files["photo_embs.npy"], await File.ReadAllBytesAsync(single));
    }

    [Fact]
    public async Task Publishing_the_same_content_again_is_a_no_op_and_leaves_one_copy()
    {
        var store = NewStore();
        var set = NewSetId();
        var dir = Temp.Sub("publish");
        Directory.CreateDirectory(Path.Combine(dir, "best"));
        await File.WriteAllTextAsync(Path.Combine(dir, "history.json"), "[1, 2]");
        await File.WriteAllBytesAsync(Path.Combine(dir, "best", "model.safetensors"), PatternStream.Bytes(5000, 3));

        var first = await store.PublishDirectoryAsync(set, "checkpoint", dir);
        var firstManifest = await store.GetManifestAsync(first);
        var second = await NewStore().PublishDirectoryAsync(set, "checkpoint", dir);

        Assert.Equal(first, second);
        Assert.Equal(firstManifest.CreatedUtc, (await store.GetManifestAsync(second)).CreatedUtc);  // the manifest was not rewritten
        var objects = await ObjectsAsync(set);
        Assert.Equal(3, objects.Count);  // manifest + 2 files: the second attempt's uploads were removed
        Assert.All(objects.Where(o => o != ArtifactPaths.ManifestFile), o => Assert.StartsWith(firstManifest.DataPrefix + "/", o));
    }

    [Fact]
    public async Task Different_content_under_an_existing_set_id_is_a_conflict_and_the_first_set_stays()
    {
        var store = NewStore();
        var set = NewSetId();
        var (first, files) = await PublishSampleAsync(store, set);

        await using var writer = store.CreateSet(set, "embeddings");
        await writer.AddFileAsync("photo_embs.npy", new MemoryStream(Encoding.UTF8.GetBytes("other bytes")));
        var conflict = await Assert.ThrowsAsync<ArtifactSetConflictException>(() => writer.CommitAsync());

        Assert.Equal(first, conflict.Existing);
        Assert.Contains(set, conflict.Message);
        var opened = await store.OpenAsync(set);
        Assert.Equal(first, opened.Reference);
        Assert.Equal(files["photo_embs.npy"], await File.ReadAllBytesAsync(opened.PathOf("photo_embs.npy")));
    }

    [Fact]
    public async Task A_set_without_a_manifest_is_not_visible_and_opening_it_is_refused()
    {
        var store = NewStore();
        var set = NewSetId();
        var writer = store.CreateSet(set, "dataset");
        await writer.AddFileAsync("rec.train.json", new MemoryStream(PatternStream.Bytes(1000, 4)));
        // Not committed (and not disposed): the file is uploaded, the manifest is not.
        Assert.Single(await ObjectsAsync(set));

        Assert.Null(await store.TryGetManifestAsync(set));
        var refused = await Assert.ThrowsAsync<ArtifactNotFoundException>(() => NewStore().OpenAsync(set));
        Assert.Contains(set, refused.Message);
        Assert.Contains("_manifest.json", refused.Message);
        Assert.Equal(ErrorKind.BadInput, refused.Kind);
        await writer.DisposeAsync();
        Assert.Empty(await ObjectsAsync(set));  // an abandoned writer removes its uploads
    }

    [Fact]
    public async Task A_source_stream_failing_mid_file_leaves_no_visible_set()
    {
        var store = NewStore();
        var set = NewSetId();
        await using (var writer = store.CreateSet(set, "embeddings"))
        {
            await writer.AddFileAsync("small.txt", new MemoryStream("ok"u8.ToArray()));
            // Fails after more than one blob block is staged.
            var failure = await Assert.ThrowsAsync<IOException>(() =>
                writer.AddFileAsync("large.bin", new PatternStream(3L * BlobArtifactStore.BlockSize, 5, throwAfter: BlobArtifactStore.BlockSize + 12345)));
            Assert.Contains("mid-file", failure.Message);
            Assert.Null(await store.TryGetManifestAsync(set));
            // Whatever of large.bin reached the store is not a complete object named like the file.
            Assert.DoesNotContain(await ObjectsAsync(set), o => o.EndsWith("/large.bin", StringComparison.Ordinal));
        }
        Assert.Null(await store.TryGetManifestAsync(set));
        await Assert.ThrowsAsync<ArtifactNotFoundException>(() => store.OpenAsync(set));
        Assert.Empty(await ObjectsAsync(set));
    }

    [Fact]
    public async Task A_writer_killed_with_SIGKILL_mid_upload_leaves_no_visible_set()
    {
        var set = NewSetId();
        var process = await KillableWriter.StartAndWaitForStallAsync(KillableWriterArgs(set));
        KillableWriter.KillHard(process);

        var store = NewStore();
        Assert.Null(await store.TryGetManifestAsync(set));
        await Assert.ThrowsAsync<ArtifactNotFoundException>(() => store.OpenAsync(set));
        // The writer really was mid-set: its first file is complete in its upload folder, the manifest is not there.
        var objects = await ObjectsAsync(set);
        Assert.Contains(objects, o => o.StartsWith(ArtifactPaths.FilesFolder + "/", StringComparison.Ordinal) && o.EndsWith("/small.txt", StringComparison.Ordinal));
        Assert.DoesNotContain(ArtifactPaths.ManifestFile, objects);
        Assert.DoesNotContain(objects, o => o.EndsWith("/large.bin", StringComparison.Ordinal));

        // A retry after the kill publishes normally, and deleting the set removes the dead writer's leftovers too.
        await using (var writer = store.CreateSet(set, "test"))
        {
            await writer.AddFileAsync("small.txt", new MemoryStream("complete file\n"u8.ToArray()));
            var reference = await writer.CommitAsync();
            Assert.Equal("complete file\n", await File.ReadAllTextAsync((await store.OpenAsync(reference)).PathOf("small.txt")));
        }
        await store.DeleteAsync(set);
        Assert.Empty(await ObjectsAsync(set));
        Assert.Null(await store.TryGetManifestAsync(set));
    }

    [Fact]
    public async Task A_corrupted_file_is_refused_with_an_error_naming_it()
    {
        var store = NewStore();
        var set = NewSetId();
        var (reference, files) = await PublishSampleAsync(store, set);
        var manifest = await store.GetManifestAsync(reference);
        var bad = files["best/model.safetensors"].ToArray();
        bad[1234] ^= 0x40;  // one flipped bit, same size
        await CorruptAsync(manifest, "best/model.safetensors", bad);

        var refused = await Assert.ThrowsAsync<ArtifactCorruptException>(() => NewStore("fresh-cache").OpenAsync(reference));
        Assert.Contains($"{set}/best/model.safetensors", refused.Message);
        Assert.Contains("corrupted", refused.Message);
        Assert.Contains(manifest["best/model.safetensors"].Sha256, refused.Message);
        Assert.Equal(ErrorKind.BadInput, refused.Kind);
        await Assert.ThrowsAsync<ArtifactCorruptException>(() => NewStore("fresh-cache-2").GetFileAsync(manifest.FileReference(store.Name, "best/model.safetensors")));
    }

    [Fact]
    public async Task A_large_file_streams_through_in_blocks_with_the_right_hash()
    {
        var store = NewStore();
        var set = NewSetId();
        long size = 2L * BlobArtifactStore.BlockSize + 777;  // three blocks, the last one short
        await using var writer = store.CreateSet(set, "embeddings");
        var entry = await writer.AddFileAsync("big.npy", new PatternStream(size, 9));
        var reference = await writer.CommitAsync();

        Assert.Equal(size, entry.Size);
        Assert.Equal(await ContentHash.OfStreamAsync(new PatternStream(size, 9)), entry.Sha256);
        var opened = await NewStore("big-cache").OpenAsync(reference);
        Assert.Equal(size, new FileInfo(opened.PathOf("big.npy")).Length);
        Assert.Equal(entry.Sha256, await ContentHash.OfFileAsync(opened.PathOf("big.npy")));
    }

    [Fact]
    public async Task Bad_set_ids_and_file_paths_are_refused()
    {
        var store = NewStore();
        Assert.Contains("runs/r1/rec", Assert.Throws<LsvcrException>(() => store.CreateSet("../etc", "x")).Message);
        Assert.Throws<LsvcrException>(() => store.CreateSet("runs/_manifest.json", "x"));
        Assert.Throws<LsvcrException>(() => store.CreateSet("runs//r1", "x"));
        await using var writer = store.CreateSet(NewSetId(), "x");
        await Assert.ThrowsAsync<LsvcrException>(() => writer.AddFileAsync("../escape.txt", new MemoryStream()));
        await Assert.ThrowsAsync<LsvcrException>(() => writer.AddFileAsync("/abs.txt", new MemoryStream()));
    }

    public void Dispose()
    {
        Temp.Dispose();
        GC.SuppressFinalize(this);
    }
}
