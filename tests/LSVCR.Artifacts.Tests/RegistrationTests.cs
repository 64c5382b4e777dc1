using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace LSVCR.Artifacts.Tests;

[Collection(AzuriteCollection.Name)]
public sealed class RegistrationTests(AzuriteFixture azurite) : IDisposable
{
    private readonly TempDir temp = new();

    private static ServiceProvider Build(Dictionary<string, string?> settings)
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(settings).Build();
        return new ServiceCollection().AddArtifactStore(configuration).BuildServiceProvider();
    }

    /// <summary>What a host runs at start-up for options registered with ValidateOnStart.</summary>
    private static void ValidateOnStart(ServiceProvider provider) => provider.GetRequiredService<IStartupValidator>().Validate();

    [Fact]
    public async Task An_Azure_connection_string_named_artifacts_selects_blob_storage()
    {
        using var provider = Build(new()
        {
            ["ConnectionStrings:artifacts"] = azurite.Server.ConnectionString,
            ["Artifacts:Container"] = "registration-test",
            ["Artifacts:CacheDirectory"] = temp.Sub("cache"),
        });
        ValidateOnStart(provider);
        var store = provider.GetRequiredService<IArtifactStore>();
        Assert.IsType<BlobArtifactStore>(store);
        Assert.Equal("azure-blob", store.Name);

        await using var writer = store.CreateSet("registration/one", "test");
        await writer.AddFileAsync("a.txt", new MemoryStream("via DI"u8.ToArray()));
        var reference = await writer.CommitAsync();
        Assert.Equal("via DI", await File.ReadAllTextAsync((await store.OpenAsync(reference)).PathOf("a.txt")));
        Assert.StartsWith(temp.Sub("cache"), (await store.OpenAsync(reference)).Directory);
    }

    [Theory]
    [InlineData("ConnectionStrings:artifacts")]
    [InlineData("Artifacts:LocalRoot")]
    public async Task A_folder_selects_the_local_store(string key)
    {
        var root = temp.Sub("local-store");
        using var provider = Build(new() { [key] = root });
        ValidateOnStart(provider);
        var store = Assert.IsType<LocalArtifactStore>(provider.GetRequiredService<IArtifactStore>());
        Assert.Equal(root, store.Root);
        var src = temp.Sub("src");
        Directory.CreateDirectory(src);
        await File.WriteAllTextAsync(Path.Combine(src, "x.json"), "{}");
        var reference = await store.PublishDirectoryAsync("registration/local", "report", src);
        Assert.True(File.Exists(Path.Combine(root, "registration", "local", ArtifactPaths.ManifestFile)));
        Assert.Equal("local", reference.Store);
    }

    [Fact]
    public void No_store_configured_fails_at_start_naming_the_keys_to_set()
    {
        using var provider = Build([]);
        var failure = Assert.Throws<OptionsValidationException>(() => ValidateOnStart(provider));
        Assert.Contains("ConnectionStrings:artifacts", failure.Message);
        Assert.Contains("Artifacts:LocalRoot", failure.Message);
    }

    [Fact]
    public void An_invalid_container_name_fails_at_start()
    {
        using var provider = Build(new() { ["ConnectionStrings:artifacts"] = azurite.Server.ConnectionString, ["Artifacts:Container"] = "Bad_Name" });
        var failure = Assert.Throws<OptionsValidationException>(() => ValidateOnStart(provider));
        Assert.Contains("Artifacts:Container 'Bad_Name'", failure.Message);
    }

    public void Dispose() => temp.Dispose();
}
