using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace LSVCR.Serving;

/// <summary>One file of a serving bundle with its SHA-256 (lower-case hex) and size.</summary>
public sealed record BundleFile(
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("sha256")] string Sha256,
    [property: JsonPropertyName("bytes")] long Bytes);

/// <summary>What an encoder graph needs to know to be fed (written by the export, read by the engine).</summary>
public sealed record EncoderInfo
{
    /// <summary>The checkpoint's task ("rec" / "commrank") and variant, epoch and validation ndcg@5.</summary>
    [JsonPropertyName("task")] public required string Task { get; init; }
    [JsonPropertyName("variant")] public required string Variant { get; init; }
    [JsonPropertyName("epoch")] public int Epoch { get; init; }
    [JsonPropertyName("val_ndcg@5")] public double? ValNdcg5 { get; init; }
    /// <summary>The checkpoint folder it was exported from.</summary>
    [JsonPropertyName("checkpoint")] public required string Checkpoint { get; init; }
    /// <summary>False for the no-comments variant: it was trained and evaluated without comment histories.</summary>
    [JsonPropertyName("uses_comment_history")] public bool UsesCommentHistory { get; init; } = true;
    /// <summary>Test metrics of the run (its test-metrics.json), when the run folder has them.</summary>
    [JsonPropertyName("test_metrics")] public JsonNode? TestMetrics { get; init; }
}

/// <summary>
/// manifest.json of a serving bundle. Written last by the export, so a folder with a manifest is complete; the
/// model version is a hash of the files' hashes, so the same content always gets the same version.
/// </summary>
public sealed record BundleManifest
{
    public const string FileName = "manifest.json";
    /// <summary>Format 2: the encoders take an entry's comments as a flat bag and average all of them (format 1 graphs
    /// took a [B, L, 16] tensor, a cap the model does not have); format 1 bundles are refused and must be re-exported.</summary>
    public const string CurrentFormat = "lsvcr-serving-bundle/2";

    [JsonPropertyName("format")] public string Format { get; init; } = CurrentFormat;
    [JsonPropertyName("model_version")] public required string ModelVersion { get; init; }
    [JsonPropertyName("created_at")] public DateTimeOffset CreatedAt { get; init; }
    /// <summary>The training run the checkpoints came from (the experiment folder or pipeline run id).</summary>
    [JsonPropertyName("training_run")] public required string TrainingRun { get; init; }
    [JsonPropertyName("dataset")] public required string Dataset { get; init; }
    [JsonPropertyName("embeddings")] public required string Embeddings { get; init; }
    [JsonPropertyName("videos")] public required int Videos { get; init; }
    [JsonPropertyName("comments")] public required int Comments { get; init; }
    [JsonPropertyName("hidden")] public required int Hidden { get; init; }
    [JsonPropertyName("max_history")] public required int MaxHistory { get; init; }
    [JsonPropertyName("temperature")] public required double Temperature { get; init; }
    [JsonPropertyName("rec")] public required EncoderInfo Rec { get; init; }
    [JsonPropertyName("commrank")] public required EncoderInfo CommRank { get; init; }
    [JsonPropertyName("files")] public required IReadOnlyList<BundleFile> Files { get; init; }

    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true };

    public string ToJson() => JsonSerializer.Serialize(this, Json);

    public static BundleManifest Read(string dir)
    {
        var path = Path.Combine(dir, FileName);
        if (!File.Exists(path)) throw new LsvcrException($"{path}: no bundle manifest (is {dir} a serving bundle?)", ErrorKind.BadInput);
        try
        {
            var m = JsonSerializer.Deserialize<BundleManifest>(File.ReadAllText(path), Json)
                    ?? throw new LsvcrException($"{path}: empty manifest", ErrorKind.BadInput);
            if (m.Format != CurrentFormat)
                throw new LsvcrException($"{path}: field \"format\" is \"{m.Format}\", expected \"{CurrentFormat}\" (re-export the bundle with this version's lsvcr export)", ErrorKind.BadInput);
            return m;
        }
        catch (JsonException e)
        {
            throw new LsvcrException($"{path}: invalid manifest ({e.Message})", e, ErrorKind.BadInput);
        }
    }

    /// <summary>The version of a set of files: the first 16 hex digits of SHA-256 over "name sha256\n" lines in name order.</summary>
    public static string VersionOf(IEnumerable<BundleFile> files)
    {
        var text = string.Concat(files.OrderBy(f => f.Name, StringComparer.Ordinal).Select(f => $"{f.Name} {f.Sha256}\n"));
        return Convert.ToHexStringLower(SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(text)))[..16];
    }

    public static BundleFile Describe(string dir, string name)
    {
        var path = Path.Combine(dir, name);
        using var f = File.OpenRead(path);
        return new BundleFile(name, Convert.ToHexStringLower(SHA256.HashData(f)), f.Length);
    }

    /// <summary>Checks every listed file's size and hash and the version: a bundle that fails this is not loaded.</summary>
    public void Verify(string dir)
    {
        foreach (var file in Files)
        {
            var path = Path.Combine(dir, file.Name);
            if (!File.Exists(path)) throw new LsvcrException($"{path}: listed in the manifest but missing", ErrorKind.BadInput);
            var actual = Describe(dir, file.Name);
            if (actual.Bytes != file.Bytes || actual.Sha256 != file.Sha256)
                throw new LsvcrException($"{path}: content does not match the manifest (sha256 {actual.Sha256[..12]}…, {actual.Bytes} bytes; manifest {file.Sha256[..Math.Min(12, file.Sha256.Length)]}…, {file.Bytes} bytes)", ErrorKind.BadInput);
        }
        var version = VersionOf(Files);
        if (version != ModelVersion)
            throw new LsvcrException($"{Path.Combine(dir, FileName)}: model_version {ModelVersion} does not match its files ({version})", ErrorKind.BadInput);
    }
}

/// <summary>File names inside a bundle.</summary>
public static class BundleFiles
{
    public const string RecEncoder = "rec_encoder.onnx";
    public const string CommRankEncoder = "commrank_encoder.onnx";
    /// <summary>[V, d] normalised Rec candidate vectors (row = internal video id, row 0 = pad).</summary>
    public const string VideoVectors = "video_vectors.npy";
    /// <summary>[C, d] normalised CommRank candidate vectors of all comments.</summary>
    public const string CommentVectors = "comment_vectors.npy";
    /// <summary>[C, 1] norms of the comment vectors before normalisation (the CommRank encoder's history input is vector × norm).</summary>
    public const string CommentNorms = "comment_norms.npy";
    /// <summary>[C, d] / [C, 1]: the same for the Rec model's adapter (its comment-history input).</summary>
    public const string RecCommentVectors = "rec_comment_vectors.npy";
    public const string RecCommentNorms = "rec_comment_norms.npy";
    public const string VideoIds = "video_ids.json";
    public const string CommentIds = "comment_ids.json";
    /// <summary>{"offsets": [V+1], "comments": [...]}: each video's comments in popularity order, CSR.</summary>
    public const string VideoComments = "video_comments.json";
    /// <summary>Internal video ids, most popular first (Rec training-target counts; the fallback ranking).</summary>
    public const string Popularity = "popularity.json";
}
