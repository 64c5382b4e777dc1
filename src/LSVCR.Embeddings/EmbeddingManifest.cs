using System.Text.Json;
using System.Text.Json.Serialization;
using LSVCR.Data;

namespace LSVCR.Embeddings;

/// <summary>
/// <c>embeddings.json</c>, written last beside the two .npy files: it describes them and marks the output complete.
/// </summary>
public sealed record EmbeddingManifest
{
    public const string FileName = "embeddings.json", PhotoFile = ReferenceLayout.PhotoEmbeddingsFile, CommentFile = ReferenceLayout.CommentEmbeddingsFile;

    /// <summary>"minilm" or "onnx:&lt;model file name&gt;".</summary>
    public required string Encoder { get; init; }
    /// <summary>SHA-256 over model bytes, tokenizer, token limit and pooling (see <see cref="TextEmbedder.Fingerprint"/>).</summary>
    public required string EncoderFingerprint { get; init; }
    public required int Dimension { get; init; }
    public string Pooling { get; init; } = TextEmbedder.Pooling;
    public bool Normalized { get; init; } = true;
    public string? Instruction { get; init; }
    public required int MaxTokens { get; init; }
    /// <summary>SHA-256 of every title and comment text in internal-id order.</summary>
    public required string DatasetHash { get; init; }
    /// <summary>Rows of photo_embs.npy, pad row 0 included (= catalogue PhotoCount).</summary>
    public required int Photos { get; init; }
    /// <summary>Rows of comment_embs.npy, pad row 0 included (= catalogue CommentCount).</summary>
    public required int Comments { get; init; }
    /// <summary>Texts actually encoded: duplicates (after the instruction prefix) are encoded once.</summary>
    public required int DistinctTexts { get; init; }
    /// <summary>SHA-256 of photo_embs.npy and comment_embs.npy as written: reuse checks the files still hold them.</summary>
    public string? PhotoSha256 { get; init; }
    public string? CommentSha256 { get; init; }
    public required int Chunks { get; init; }
    /// <summary>Chunks taken from an interrupted earlier run instead of being encoded again.</summary>
    public int ChunksResumed { get; init; }
    public required string Device { get; init; }
    public IReadOnlyList<string> Warnings { get; init; } = [];
    public double ElapsedSeconds { get; init; }
    public DateTime CreatedUtc { get; init; }
    /// <summary>True when <see cref="EmbeddingJob.RunAsync"/> found these outputs complete and encoded nothing.</summary>
    [JsonIgnore]
    public bool Reused { get; init; }

    internal static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
    };

    /// <summary>Reads <c>dir/embeddings.json</c>; a missing or malformed file is an <see cref="LsvcrException"/>.</summary>
    public static EmbeddingManifest Read(string dir)
    {
        var path = Path.Combine(dir, FileName);
        if (!File.Exists(path)) throw new LsvcrException($"{path}: not found (run `lsvcr embed` first)");
        try
        {
            return JsonSerializer.Deserialize<EmbeddingManifest>(File.ReadAllText(path), Json)
                   ?? throw new LsvcrException($"{path}: empty manifest");
        }
        catch (JsonException e)
        {
            throw new LsvcrException($"{path}: invalid embeddings manifest ({e.Message})", e);
        }
    }

    internal void Write(string dir)
    {
        var path = Path.Combine(dir, FileName);
        var tmp = Path.Combine(dir, $".{FileName}.{Environment.ProcessId}.tmp");
        File.WriteAllText(tmp, JsonSerializer.Serialize(this, Json));
        File.Move(tmp, path, overwrite: true);
    }
}
