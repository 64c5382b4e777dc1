using LSVCR.Data;

namespace LSVCR.Embeddings.Tests;

/// <summary>Every bad input ends in one <see cref="LsvcrException"/> whose message names the culprit.</summary>
public class BadInputTests
{
    private static string Fails(EmbedOptions options) => Assert.Throws<LsvcrException>(() => TextEmbedder.Open(options).Dispose()).Message;

    [Fact]
    public void Missing_model_file()
    {
        using var dir = new TestDir();
        var path = Path.Combine(dir.Path, "nope.onnx");
        Assert.Equal($"{path}: model file not found", Fails(new() { ModelPath = path }));
    }

    [Fact]
    public void Model_file_that_is_not_onnx()
    {
        using var dir = new TestDir();
        TinyOnnx.Write(dir.Path);
        var path = Path.Combine(dir.Path, "model.onnx");
        File.WriteAllText(path, "this is not a protobuf");
        Assert.StartsWith($"{path}: not a loadable ONNX model (", Fails(new() { ModelPath = path }));
    }

    [Fact]
    public void Model_without_attention_mask_input()
    {
        using var dir = new TestDir();
        var path = TinyOnnx.Write(dir.Path, withAttentionMask: false);
        Assert.StartsWith($"{path}: the model has no 'attention_mask' input (inputs: input_ids)", Fails(new() { ModelPath = path }));
    }

    [Fact]
    public void Missing_tokenizer_beside_the_model()
    {
        using var dir = new TestDir();
        var path = TinyOnnx.Write(dir.Path);
        File.Delete(Path.Combine(dir.Path, "vocab.txt"));
        Assert.Equal($"{dir.Path}: no tokenizer.json or vocab.txt in this folder", Fails(new() { ModelPath = path }));
    }

    [Fact]
    public void Missing_tokenizer_file()
    {
        using var dir = new TestDir();
        var path = TinyOnnx.Write(dir.Path);
        var vocab = Path.Combine(dir.Path, "other", "vocab.txt");
        Assert.Equal($"{vocab}: tokenizer file not found", Fails(new() { ModelPath = path, TokenizerPath = vocab }));
    }

    [Fact]
    public void Tokenizer_json_that_is_not_a_tokenizer()
    {
        using var dir = new TestDir();
        var path = TinyOnnx.Write(dir.Path);
        var json = Path.Combine(dir.Path, "tokenizer.json");
        File.WriteAllText(json, """{"model": {"type": "BPE"}}""");
        Assert.StartsWith($"{json}: not a usable BERT/WordPiece tokenizer.json (", Fails(new() { ModelPath = path, TokenizerPath = json }));
    }

    [Fact]
    public void Vocabulary_without_special_tokens()
    {
        using var dir = new TestDir();
        var path = TinyOnnx.Write(dir.Path);
        var vocab = Path.Combine(dir.Path, "words.txt");
        File.WriteAllLines(vocab, ["cat", "dog"]);
        Assert.StartsWith(vocab + ":", Fails(new() { ModelPath = path, TokenizerPath = vocab }));
    }

    [Fact]
    public void Tokenizer_of_another_model_is_caught_at_load()
    {
        using var dir = new TestDir();
        var path = Path.Combine(dir.Path, "model.onnx");
        TinyOnnx.Write(dir.Path);
        // A 6-row table cannot look up "hello" (id 7): the vocabulary belongs to a bigger model.
        File.WriteAllBytes(path, TinyOnnx.Model(rows: 6, withAttentionMask: true));
        var message = Fails(new() { ModelPath = path });
        Assert.StartsWith($"{path}: inference failed (", message);
        Assert.EndsWith($"does the tokenizer ({Path.Combine(dir.Path, "vocab.txt")}) belong to this model?", message);
    }

    [Fact]
    public void Inference_failure_in_a_worker_surfaces_as_one_clear_error()
    {
        using var dir = new TestDir();
        var path = Path.Combine(dir.Path, "model.onnx");
        TinyOnnx.Write(dir.Path);
        // 8 rows pass the load-time probe ("hello" = id 7) but cannot look up 中 (id 9) in the fourth batch.
        File.WriteAllBytes(path, TinyOnnx.Model(rows: 8, withAttentionMask: true));
        using var embedder = TextEmbedder.Open(new() { ModelPath = path, Threads = 2, BatchSize = 1 });
        var error = Assert.Throws<LsvcrException>(() => embedder.Encode(["cat", "dog", "cat dog", "中 国"]));
        Assert.StartsWith($"{path}: inference failed (", error.Message);
    }

    [Theory]
    [InlineData("bge", "unknown encoder 'bge': the built-in encoder is 'minilm'; give an ONNX model path (ModelPath) for others")]
    [InlineData("minilm:gpu", "unknown encoder 'minilm:gpu': the built-in encoder is 'minilm'; give an ONNX model path (ModelPath) for others")]
    public void Unknown_encoder(string encoder, string message) => Assert.Equal(message, Fails(new() { Encoder = encoder }));

    [Fact]
    public void Bad_option_values()
    {
        Assert.Equal("Device must be cpu or cuda (got 'tpu')", Fails(new() { Device = "tpu" }));
        Assert.Equal("BatchSize must be at least 1 (got 0)", Fails(new() { BatchSize = 0 }));
        Assert.Equal("Threads must be 0 (all cores) or more (got -1)", Fails(new() { Threads = -1 }));
    }

    [Fact]
    public void Missing_manifest()
    {
        using var dir = new TestDir();
        Assert.Equal($"{Path.Combine(dir.Path, "embeddings.json")}: not found (run `lsvcr embed` first)",
            Assert.Throws<LsvcrException>(() => EmbeddingManifest.Read(dir.Path)).Message);
        File.WriteAllText(Path.Combine(dir.Path, "embeddings.json"), "{ not json");
        Assert.StartsWith($"{Path.Combine(dir.Path, "embeddings.json")}: invalid embeddings manifest (",
            Assert.Throws<LsvcrException>(() => EmbeddingManifest.Read(dir.Path)).Message);
    }
}
