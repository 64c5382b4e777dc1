namespace LSVCR.Artifacts.Tests;

public sealed class LocalStoreTests : StoreContract
{
    private string Root => Temp.Sub("store");

    protected override IArtifactStore NewStore(string cacheName = "cache") => new LocalArtifactStore(Root);

    protected override Task CorruptAsync(ArtifactManifest manifest, string file, byte[] bytes) =>
        File.WriteAllBytesAsync(Path.Combine(Root, manifest.StorePath(file)), bytes);

    protected override Task<IReadOnlyList<string>> ObjectsAsync(string set)
    {
        var dir = Path.Combine(Root, set);
        IReadOnlyList<string> files = Directory.Exists(dir)
            ? Directory.EnumerateFiles(dir, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(dir, f)).Order().ToList()
            : [];
        return Task.FromResult(files);
    }

    protected override string[] KillableWriterArgs(string set) => ["local", Root, set];

    [Fact]
    public async Task Opening_reads_the_files_in_place_without_copies()
    {
        var store = NewStore();
        var set = NewSetId();
        var src = Temp.Sub("src");
        Directory.CreateDirectory(src);
        await File.WriteAllTextAsync(Path.Combine(src, "a.txt"), "alpha");
        var reference = await store.PublishDirectoryAsync(set, "report", src);
        var opened = await store.OpenAsync(reference);
        var manifest = await store.GetManifestAsync(reference);
        Assert.Equal(Path.Combine(Root, set, manifest.DataPrefix), opened.Directory);
        Assert.Equal("alpha", await File.ReadAllTextAsync(opened.PathOf("a.txt")));
    }
}
