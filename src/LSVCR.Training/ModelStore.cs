using System.Text.Json;
using LSVCR.Data;
using LSVCR.Modeling;
using static TorchSharp.torch;

namespace LSVCR.Training;

/// <summary>What a saved fine-tuned model is: enough to rebuild it and to evaluate it the way it was trained.</summary>
public sealed record ModelInfo
{
    public required string Task { get; init; }
    public required string Variant { get; init; }
    public required RecComConfig Config { get; init; }
    public int Epoch { get; init; }
    /// <summary>Validation ndcg@5 of this checkpoint (NaN when the split had no examples).</summary>
    public double ValNdcg5 { get; init; }
    public DateTimeOffset SavedAt { get; init; } = DateTimeOffset.UtcNow;
}

/// <summary>
/// A model folder: <c>model.bin</c> (TorchSharp state dict of the parameters) and <c>model.json</c> (<see cref="ModelInfo"/>).
/// Item text embeddings are not stored: they are the embeddings artifacts, given again at load time.
/// Folders are written under a temporary name and renamed, so a kill never leaves a half-written model behind.
/// </summary>
public static class ModelStore
{
    public const string WeightsFile = "model.bin", InfoFile = "model.json";

    public static void Save(RecCom model, ModelInfo info, string dir, Action<string>? extra = null)
    {
        var full = Path.GetFullPath(dir);
        var parent = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(parent);
        var tmp = Path.Combine(parent, $".{Path.GetFileName(full)}.{Environment.ProcessId}.tmp");
        if (Directory.Exists(tmp)) Directory.Delete(tmp, recursive: true);
        Directory.CreateDirectory(tmp);
        model.save(Path.Combine(tmp, WeightsFile));
        File.WriteAllText(Path.Combine(tmp, InfoFile), JsonSerializer.Serialize(info, Json.Indented));
        extra?.Invoke(tmp);
        Replace(tmp, full);
    }

    /// <summary>Swaps a finished temporary folder into place; the old one is kept as <c>.old</c> until the swap is done.</summary>
    internal static void Replace(string tmp, string dir)
    {
        var old = dir + ".old";
        if (Directory.Exists(old)) Directory.Delete(old, recursive: true);
        if (Directory.Exists(dir)) Directory.Move(dir, old);
        Directory.Move(tmp, dir);
        if (Directory.Exists(old)) Directory.Delete(old, recursive: true);
    }

    /// <summary>The folder to load from: <paramref name="dir"/> itself, its <c>best</c> sub-folder (a training output), or a
    /// leftover <c>.old</c> from a swap interrupted by a kill.</summary>
    public static string Locate(string dir)
    {
        foreach (var candidate in new[] { dir, Path.Combine(dir, "best"), dir + ".old" })
            if (File.Exists(Path.Combine(candidate, InfoFile)) && File.Exists(Path.Combine(candidate, WeightsFile)))
                return candidate;
        throw new LsvcrException($"{dir}: no model found (expected {InfoFile} and {WeightsFile} in it or in {Path.Combine(dir, "best")})");
    }

    public static ModelInfo ReadInfo(string dir)
    {
        var path = Path.Combine(dir, InfoFile);
        try
        {
            return JsonSerializer.Deserialize<ModelInfo>(File.ReadAllText(path)) ?? throw new LsvcrException($"{path}: empty");
        }
        catch (JsonException e)
        {
            throw new LsvcrException($"{path}: not a model description ({e.Message})");
        }
    }

    /// <summary>Rebuilds the model of <paramref name="dir"/> (see <see cref="Locate"/>) over the given text embeddings.</summary>
    public static (RecCom Model, ModelInfo Info) Load(string dir, FloatMatrix photoEmbs, FloatMatrix commentEmbs)
    {
        dir = Locate(dir);
        var info = ReadInfo(dir);
        var config = info.Config;
        if (config.PhotoCount != photoEmbs.Rows || config.CommentCount != commentEmbs.Rows || config.TextDim != photoEmbs.Cols)
            throw new LsvcrException(
                $"{dir}: the model was trained for {config.PhotoCount} videos / {config.CommentCount} comments with {config.TextDim}-d texts, " +
                $"but the embeddings hold {photoEmbs.Rows}×{photoEmbs.Cols} / {commentEmbs.Rows}×{commentEmbs.Cols}");
        var model = Create(config, photoEmbs, commentEmbs);
        LoadWeights(model, Path.Combine(dir, WeightsFile));
        return (model, info);
    }

    internal static RecCom Create(RecComConfig config, FloatMatrix photoEmbs, FloatMatrix commentEmbs)
    {
        using var p = tensor(photoEmbs.Data, [photoEmbs.Rows, photoEmbs.Cols]);
        using var c = tensor(commentEmbs.Data, [commentEmbs.Rows, commentEmbs.Cols]);
        return new RecCom(config, p, c);
    }

    internal static void LoadWeights(RecCom model, string path)
    {
        try
        {
            model.load(path, strict: true);
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or IOException)
        {
            throw new LsvcrException($"{path}: cannot load the weights into the model ({e.Message})");
        }
    }
}
