using LSVCR.Data;

namespace LSVCR.Embeddings.Tests;

/// <summary>The custom-model path and the job, on the hand-made Gather model (expected vectors computed by hand).</summary>
public class TinyEncoderTests
{
    // Token rows: [CLS]=(1,0,0) [SEP]=(0,1,0) [UNK]=(1,1,1) cat=(0,0,4) dog=(0,4,0) hello=(2,0,0) ##s=(0,0,2) 中=(3,0,0) 国=(0,0,3).
    // A text's vector = normalize(mean of its tokens' rows incl. [CLS]/[SEP]); the mean's 1/n cancels in the normalisation.
    private static float[] Unit(params float[] v)
    {
        var norm = MathF.Sqrt(v.Sum(x => x * x));
        return v.Select(x => x / norm).ToArray();
    }

    private static void Near(float[] expected, ReadOnlySpan<float> actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++) Assert.Equal(expected[i], actual[i], 5);
    }

    private static EmbedOptions Tiny(string dir, bool withAttentionMask = true) =>
        new() { ModelPath = TinyOnnx.Write(dir, withAttentionMask), Threads = 2, BatchSize = 2 };

    [Fact]
    public void Encodes_texts_as_normalized_mean_of_token_states()
    {
        using var dir = new TestDir();
        using var embedder = TextEmbedder.Open(Tiny(dir.Path));
        Assert.Equal(3, embedder.Dimension);
        Assert.Equal("onnx:model.onnx", embedder.EncoderId);
        Assert.Equal(512, embedder.MaxTokens); // no config beside the vocab: BERT's 512
        var v = embedder.Encode(["cat", "", "cats", "hello dog", "中国", "zebra", "CAT"]);
        Near(Unit(1, 1, 4), v[0]);
        Near(Unit(1, 1, 0), v[1]);          // empty text = [CLS] [SEP]
        Near(Unit(1, 1, 6), v[2]);          // cat ##s
        Near(Unit(3, 5, 0), v[3]);
        Near(Unit(4, 1, 3), v[4]);          // CJK split per character
        Near(Unit(2, 2, 1), v[5]);          // unknown word → [UNK]
        Near(Unit(1, 1, 4), v[6]);          // uncased vocab lowercases
    }

    [Fact]
    public void Prefers_tokenizer_json_beside_the_model_and_honours_its_casing()
    {
        using var dir = new TestDir();
        var options = Tiny(dir.Path);
        File.WriteAllText(Path.Combine(dir.Path, "tokenizer.json"), TinyOnnx.TokenizerJson(lowercase: false));
        using var embedder = TextEmbedder.Open(options);
        var v = embedder.Encode(["cat", "CAT"]);
        Near(Unit(1, 1, 4), v[0]);
        Near(Unit(2, 2, 1), v[1]); // cased: "CAT" is not in the vocabulary → [UNK]
    }

    [Fact]
    public void Truncates_at_the_model_max_length_from_tokenizer_config()
    {
        using var dir = new TestDir();
        var options = Tiny(dir.Path);
        File.WriteAllText(Path.Combine(dir.Path, "tokenizer_config.json"), """{"model_max_length": 4, "do_lower_case": true}""");
        using var embedder = TextEmbedder.Open(options);
        Assert.Equal(4, embedder.MaxTokens);
        Assert.Equal(4, embedder.TokenCount("cat dog hello hello hello"));
        // [CLS] cat dog [SEP]: the tail is cut, [SEP] kept.
        Near(Unit(1, 5, 4), embedder.Encode(["cat dog hello hello hello"])[0]);
    }

    [Fact]
    public async Task Writes_rows_by_internal_id_with_zero_pad_row_and_encodes_duplicates_once()
    {
        using var dir = new TestDir();
        var catalog = Catalogs.Make(["cat", "dog", "cat"], [["", "cats"], ["hello dog"], ["dog"]]);
        var outDir = dir.Sub("out");
        var manifest = await EmbeddingJob.RunAsync(catalog, outDir, Tiny(dir.Sub("model")));

        var photos = Npy.Read(Path.Combine(outDir, EmbeddingManifest.PhotoFile));
        var comments = Npy.Read(Path.Combine(outDir, EmbeddingManifest.CommentFile));
        Assert.Equal((4, 3), (photos.Rows, photos.Cols));
        Assert.Equal((5, 3), (comments.Rows, comments.Cols));
        Assert.All(photos.Row(0).ToArray(), x => Assert.Equal(0f, x));
        Assert.All(comments.Row(0).ToArray(), x => Assert.Equal(0f, x));
        Near(Unit(1, 1, 4), photos.Row(1));
        Near(Unit(1, 5, 0), photos.Row(2));
        Near(Unit(1, 1, 4), photos.Row(3));
        Near(Unit(1, 1, 0), comments.Row(1));
        Near(Unit(1, 1, 6), comments.Row(2));
        Near(Unit(3, 5, 0), comments.Row(3));
        Near(Unit(1, 5, 0), comments.Row(4));

        Assert.Equal("onnx:model.onnx", manifest.Encoder);
        Assert.Equal(3, manifest.Dimension);
        Assert.Equal("mean", manifest.Pooling);
        Assert.True(manifest.Normalized);
        Assert.Equal(4, manifest.Photos);
        Assert.Equal(5, manifest.Comments);
        Assert.Equal(5, manifest.DistinctTexts); // cat, dog, "", cats, hello dog
        Assert.Equal(EmbeddingJob.DatasetHash(catalog), manifest.DatasetHash);
        Assert.Equal(64, manifest.DatasetHash.Length);
        Assert.False(manifest.Reused);
        Assert.False(Directory.Exists(Path.Combine(outDir, EmbeddingJob.WorkFolder)));
        Assert.Empty(Directory.GetFiles(outDir, "*.tmp", SearchOption.AllDirectories));

        var read = EmbeddingManifest.Read(outDir);
        Assert.Equal(manifest.DatasetHash, read.DatasetHash);
        Assert.Equal(manifest.EncoderFingerprint, read.EncoderFingerprint);
        Assert.Equal(5, read.DistinctTexts);
    }

    [Fact]
    public async Task Npy_files_load_in_numpy()
    {
        using var dir = new TestDir();
        var catalog = Catalogs.Make(["cat", "hello dog"], [["中国"], []]);
        var outDir = dir.Sub("out");
        await EmbeddingJob.RunAsync(catalog, outDir, Tiny(dir.Sub("model")));
        var output = LSVCR.TestServers.DebianPython.Run($"""
            import numpy as np
            p = np.load(r'{Path.Combine(outDir, EmbeddingManifest.PhotoFile)}')
            c = np.load(r'{Path.Combine(outDir, EmbeddingManifest.CommentFile)}')
            print(p.dtype, p.shape, c.shape, float(abs(p[0]).sum()), float(abs(c[0]).sum()), '%.5f %.5f %.5f' % tuple(p[2]), '%.5f' % c[1][0])
            """);
        // hello dog → (3,5,0)/√34; 中国 → (4,1,3)/√26.
        Assert.Equal("float32 (3, 3) (2, 3) 0.0 0.0 0.51450 0.85749 0.00000 0.78446", output);
    }

    [Fact]
    public async Task Complete_outputs_for_the_same_texts_and_settings_are_reused()
    {
        using var dir = new TestDir();
        var catalog = Catalogs.Make(["cat", "dog"], [["hello"], []]);
        var outDir = dir.Sub("out");
        var options = Tiny(dir.Sub("model"));
        var first = await EmbeddingJob.RunAsync(catalog, outDir, options);
        var stamp = File.GetLastWriteTimeUtc(Path.Combine(outDir, EmbeddingManifest.PhotoFile));

        var again = await EmbeddingJob.RunAsync(catalog, outDir, options);
        Assert.True(again.Reused);
        Assert.Equal(first.CreatedUtc, again.CreatedUtc);
        Assert.Equal(stamp, File.GetLastWriteTimeUtc(Path.Combine(outDir, EmbeddingManifest.PhotoFile)));
        Assert.True((await EmbeddingJob.RunAsync(catalog, outDir, options with { Instruction = "" })).Reused); // "" = no instruction

        // A different instruction changes the texts, so nothing is reused and the vectors change.
        var prefixed = await EmbeddingJob.RunAsync(catalog, outDir, options with { Instruction = "hello " });
        Assert.False(prefixed.Reused);
        Assert.Equal("hello ", prefixed.Instruction);
        Near(Unit(3, 1, 4), Npy.Read(Path.Combine(outDir, EmbeddingManifest.PhotoFile)).Row(1)); // hello cat

        // A changed text changes the dataset hash.
        var changed = Catalogs.Make(["cat", "dogs"], [["hello"], []]);
        Assert.NotEqual(EmbeddingJob.DatasetHash(catalog), EmbeddingJob.DatasetHash(changed));
        Assert.False((await EmbeddingJob.RunAsync(changed, outDir, options)).Reused);

        // Keyed by content, not shape: an output file altered after it was written (same shape) is encoded again.
        var photos = Path.Combine(outDir, EmbeddingManifest.PhotoFile);
        var good = Npy.Read(photos);
        var tampered = good with { Data = [.. good.Data.Select(v => -v)] };
        Npy.Write(photos, tampered);
        Assert.False((await EmbeddingJob.RunAsync(changed, outDir, options)).Reused);
        Assert.Equal(good.Data, Npy.Read(photos).Data);
    }

    [Fact]
    public async Task Cancelled_run_resumes_from_completed_chunks_with_identical_output()
    {
        using var dir = new TestDir();
        string[] words = ["cat", "dog", "hello", "cats", "中国", "zebra"];
        var texts = (from a in words from b in words select $"{a} {b}").Concat(words).ToArray(); // 36 pairs + 6 words = 42 distinct texts
        var catalog = Catalogs.Make(texts[..20], [texts[20..], ["cat", "dog dog"]]);
        var options = Tiny(dir.Sub("model")) with { ChunkSize = 5, BatchSize = 2 };

        var whole = await EmbeddingJob.RunAsync(catalog, dir.Sub("whole"), options);
        Assert.Equal(42, whole.DistinctTexts); // the two extra comments repeat earlier texts
        Assert.Equal(9, whole.Chunks);
        Assert.Equal(0, whole.ChunksResumed);

        var outDir = dir.Sub("resumed");
        using var cts = new CancellationTokenSource();
        var stopAfterThree = new SyncProgress(p =>
        {
            if (p.Stage == "embed" && p.Detail?.StartsWith("chunk 3/") == true) cts.Cancel();
        });
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => EmbeddingJob.RunAsync(catalog, outDir, options, stopAfterThree, cts.Token));
        Assert.False(File.Exists(Path.Combine(outDir, EmbeddingManifest.FileName)));
        Assert.False(File.Exists(Path.Combine(outDir, EmbeddingManifest.PhotoFile)));
        var chunks = Directory.GetFiles(Path.Combine(outDir, EmbeddingJob.WorkFolder), "chunk_*.npy", SearchOption.AllDirectories).Order().ToArray();
        Assert.Equal(3, chunks.Length);
        // A damaged chunk file is encoded again rather than trusted.
        File.WriteAllBytes(chunks[1], File.ReadAllBytes(chunks[1])[..20]);

        var resumed = await EmbeddingJob.RunAsync(catalog, outDir, options);
        Assert.Equal(2, resumed.ChunksResumed);
        Assert.Equal(9, resumed.Chunks);
        foreach (var file in new[] { EmbeddingManifest.PhotoFile, EmbeddingManifest.CommentFile })
            Assert.Equal(File.ReadAllBytes(Path.Combine(dir.Path, "whole", file)), File.ReadAllBytes(Path.Combine(outDir, file)));
    }

    [Fact]
    public async Task Cuda_request_without_a_gpu_warns_and_runs_on_cpu()
    {
        using var dir = new TestDir();
        var catalog = Catalogs.Make(["cat"], [["dog"]]);
        var options = Tiny(dir.Sub("model"));
        var manifest = await EmbeddingJob.RunAsync(catalog, dir.Sub("out"), options with { Device = "cuda" });
        Assert.Equal("cpu", manifest.Device);
        var warning = Assert.Single(manifest.Warnings);
        Assert.Contains("CUDA", warning);
        Assert.Contains("running on CPU", warning);
        Near(Unit(1, 1, 4), Npy.Read(Path.Combine(dir.Path, "out", EmbeddingManifest.PhotoFile)).Row(1));
    }
}
