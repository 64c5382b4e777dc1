using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;

namespace LSVCR.Serving.Tests;

/// <summary>The service in the ASP.NET Core test host over a bundle root, with settings overridden per test.</summary>
public sealed class ServingFactory(string bundleRoot, IReadOnlyDictionary<string, string?>? settings = null) : WebApplicationFactory<Program>
{
    public const string AdminKey = "test-admin-key";

    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        builder.UseSetting("Serving:BundleRoot", bundleRoot);
        builder.UseSetting("Serving:PollInterval", "00:00:00.100");
        builder.UseSetting("Serving:AdminApiKey", AdminKey);
        foreach (var (k, v) in settings ?? new Dictionary<string, string?>()) builder.UseSetting(k, v);
    }

    /// <summary>Waits (bounded) until /health says ready.</summary>
    public async Task<HttpClient> ReadyClientAsync()
    {
        var client = CreateClient();
        for (int i = 0; i < 300; i++)
        {
            if ((await client.GetAsync("/health")).StatusCode == HttpStatusCode.OK) return client;
            await Task.Delay(100);
        }
        throw new TimeoutException("the service did not become ready in 30 s");
    }
}

/// <summary>Two bundles of different random models over the same data: "a" served, "b" kept outside the root until a test publishes it.</summary>
public sealed class BundlesFixture : IDisposable
{
    public TempDir Dir { get; } = new();
    public TestBundle A { get; }
    public TestBundle B { get; }
    public string Root { get; }

    public BundlesFixture()
    {
        Root = Path.Combine(Dir.Path, "root");
        A = TestBundle.Create(Dir.Path, Path.Combine(Root, "a"), 101);
        B = TestBundle.Create(Dir.Path, Path.Combine(Dir.Path, "unpublished", "b"), 202);
    }

    /// <summary>A fresh bundle root holding copies of the given bundles.</summary>
    public string NewRoot(params TestBundle[] bundles)
    {
        var root = Path.Combine(Dir.Path, "root-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(root);
        foreach (var b in bundles) Copy(b.BundleDir, Path.Combine(root, Path.GetFileName(b.BundleDir)));
        return root;
    }

    public static void Copy(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var f in Directory.GetFiles(from)) File.Copy(f, Path.Combine(to, Path.GetFileName(f)));
    }

    public void Dispose() => Dir.Dispose();
}

internal static class Json
{
    public static async Task<JsonObject> BodyAsync(this HttpResponseMessage r) =>
        (JsonNode.Parse(await r.Content.ReadAsStringAsync()) as JsonObject) ?? throw new InvalidOperationException("not a JSON object");

    public static Task<HttpResponseMessage> PostJsonAsync(this HttpClient c, string url, object body) => c.PostAsJsonAsync(url, body);

    public static Task<HttpResponseMessage> PostRawAsync(this HttpClient c, string url, string body) =>
        c.PostAsync(url, new StringContent(body, System.Text.Encoding.UTF8, "application/json"));
}
