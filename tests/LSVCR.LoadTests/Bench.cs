using System.Diagnostics;
using System.Text.Json;
using LSVCR.Data;
using LSVCR.Modeling;
using LSVCR.Serving.Export;
using LSVCR.Training;
using static TorchSharp.torch;

namespace LSVCR.LoadTests;

/// <summary>`prepare`: the benchmark catalogue (synthetic data at 100k videos / ≈1M comments, random text embeddings,
/// randomly initialised checkpoints — speed does not depend on training) exported as two bundles (a served, b for the swap).</summary>
public static class BenchPrepare
{
    public static void Run(string dir, int videos, int commentsPerVideo, int users, int dim)
    {
        var sw = Stopwatch.StartNew();
        var data = SyntheticDataset.Generate(new SynthOptions { Users = users, Videos = videos, CommentsPerVideo = commentsPerVideo, Seed = 42 });
        var dataDir = Path.Combine(dir, "data");
        ReferenceLayout.Write(data, dataDir);
        var cat = data.Catalog;
        Console.WriteLine($"data: {cat.PhotoCount - 1:N0} videos, {cat.CommentCount - 1:N0} comments, {users:N0} users ({sw.Elapsed.TotalSeconds:F0} s)");
        var rng = new Random(7);
        FloatMatrix Random(int rows)
        {
            var m = new float[(long)rows * dim];
            for (long i = 0; i < m.Length; i++) m[i] = (float)(rng.NextDouble() * 2 - 1);
            return new FloatMatrix(m, rows, dim);
        }
        var embDir = Path.Combine(dir, "embeddings");
        var photos = Random(cat.PhotoCount);
        var comments = Random(cat.CommentCount);
        Npy.Write(Path.Combine(embDir, TextEmbeddings.PhotoFile), photos);
        Npy.Write(Path.Combine(embDir, TextEmbeddings.CommentFile), comments);
        foreach (var name in new[] { "a", "b" })
        {
            manual_seed(name == "a" ? 1 : 2);
            var runs = Path.Combine(dir, $"runs-{name}");
            foreach (var task in new[] { "rec", "commrank" })
            {
                var config = new RecComConfig { PhotoCount = cat.PhotoCount, CommentCount = cat.CommentCount, TextDim = dim };
                using var p = tensor(photos.Data, [photos.Rows, photos.Cols]);
                using var c = tensor(comments.Data, [comments.Rows, comments.Cols]);
                using var model = new RecCom(config, p, c);
                ModelStore.Save(model, new ModelInfo { Task = task, Variant = Variants.Full, Config = config }, Path.Combine(runs, task, Variants.Full));
            }
            Export(dir, name, Path.Combine(dir, $"bundle-{name}"));
            Console.WriteLine($"({sw.Elapsed.TotalSeconds:F0} s)");
        }
    }

    /// <summary>The bundle of the prepared checkpoints <c>runs-{name}</c> into <paramref name="output"/>.</summary>
    public static void Export(string dir, string name, string output)
    {
        var runs = Path.Combine(dir, $"runs-{name}");
        var m = BundleExporter.Export(new ExportOptions
        {
            Rec = Path.Combine(runs, "rec", Variants.Full), CommRank = Path.Combine(runs, "commrank", Variants.Full),
            Data = Path.Combine(dir, "data"), Embeddings = Path.Combine(dir, "embeddings"), Out = output, TrainingRun = $"bench-{name}",
        });
        Console.WriteLine($"bundle {name}: {m.ModelVersion}, {m.Files.Sum(f => f.Bytes) / 1e6:F0} MB in {output}");
    }
}

/// <summary>Request bodies drawn from a bundle's catalogue: histories of 50 videos and 20 comment entries.</summary>
public sealed class Bodies
{
    public byte[][] Videos { get; }
    public byte[][] Comments { get; }
    public static readonly byte[][] Malformed =
    [
        .. new[]
        {
            "{\"video_history\": [\"a\"", "not json", "", "{\"k\": \"ten\"}", "{\"k\": 0}", "{\"k\": 5000}", "{\"video_history\": [true]}",
            "{\"comment_history\": [null]}", "{\"colour\": 1}", "[1,2,3]", "{\"video_history\": \"x\"}", "null",
        }.Select(System.Text.Encoding.UTF8.GetBytes),
    ];

    public Bodies(string bundle, int count, int seed = 1)
    {
        var videos = JsonSerializer.Deserialize<string[]>(File.ReadAllText(Path.Combine(bundle, "video_ids.json")))!;
        var comments = JsonSerializer.Deserialize<string[]>(File.ReadAllText(Path.Combine(bundle, "comment_ids.json")))!;
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(bundle, "video_comments.json")));
        var offsets = doc.RootElement.GetProperty("offsets").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        var list = doc.RootElement.GetProperty("comments").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        var rng = new Random(seed);
        int V() => 1 + rng.Next(videos.Length - 1);
        int WithComments() { while (true) { var v = V(); if (offsets[v + 1] > offsets[v]) return v; } }
        Entry[] Entries() => [.. Enumerable.Range(0, 20).Select(_ =>
        {
            var v = WithComments();
            var n = offsets[v + 1] - offsets[v];
            return new Entry(videos[v], [.. Enumerable.Range(0, 1 + rng.Next(3)).Select(_ => comments[list[offsets[v] + rng.Next(n)]])]);
        })];
        string[] History() => [.. Enumerable.Range(0, 50).Select(_ => videos[V()])];
        Videos = [.. Enumerable.Range(0, count).Select(_ => JsonSerializer.SerializeToUtf8Bytes(new VideoBody(History(), Entries(), 10)))];
        Comments = [.. Enumerable.Range(0, count).Select(_ => JsonSerializer.SerializeToUtf8Bytes(new CommentBody(History(), Entries(), videos[WithComments()], 20)))];
    }
}

internal sealed record Entry([property: System.Text.Json.Serialization.JsonPropertyName("video")] string Video, [property: System.Text.Json.Serialization.JsonPropertyName("comments")] string[] Comments);
internal sealed record VideoBody([property: System.Text.Json.Serialization.JsonPropertyName("video_history")] string[] VideoHistory,
    [property: System.Text.Json.Serialization.JsonPropertyName("comment_history")] Entry[] CommentHistory, [property: System.Text.Json.Serialization.JsonPropertyName("k")] int K);
internal sealed record CommentBody([property: System.Text.Json.Serialization.JsonPropertyName("video_history")] string[] VideoHistory,
    [property: System.Text.Json.Serialization.JsonPropertyName("comment_history")] Entry[] CommentHistory,
    [property: System.Text.Json.Serialization.JsonPropertyName("video")] string Video, [property: System.Text.Json.Serialization.JsonPropertyName("k")] int K);
