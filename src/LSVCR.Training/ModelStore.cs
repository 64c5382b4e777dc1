using System.Text.Json.Nodes;
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
    /// <summary>The effective settings of the run that trained it (metadata <c>settings</c>); null for checkpoints
    /// written before settings were stored, or whose settings this version cannot read.</summary>
    public TrainOptions? Settings { get; init; }
}

/// <summary>
/// Fine-tuned model folders in the model library's checkpoint format (<see cref="Checkpoint"/>: <c>model.safetensors</c>
/// with reference parameter names + <c>config.json</c>), with the run's task, variant, epoch and validation score in
/// its metadata, so serving loads them with <see cref="Checkpoint.Load"/> as well. Item text embeddings are not stored:
/// they are the embeddings artifacts, given again at load time. Folders are written under a temporary name and
/// swapped in, so a kill never leaves a half-written model behind.
/// </summary>
public static class ModelStore
{
    public static void Save(RecCom model, ModelInfo info, string dir, Action<string>? extra = null)
    {
        var full = Path.GetFullPath(dir);
        var parent = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(parent);
        var tmp = Path.Combine(parent, $".{Path.GetFileName(full)}.{Environment.ProcessId}.tmp");
        if (Directory.Exists(tmp)) Directory.Delete(tmp, recursive: true);
        Checkpoint.Save(model, tmp, new JsonObject
        {
            ["task"] = info.Task, ["variant"] = info.Variant, ["epoch"] = info.Epoch,
            ["val_ndcg@5"] = double.IsFinite(info.ValNdcg5) ? info.ValNdcg5 : null, ["saved_at"] = info.SavedAt.ToString("O"),
            ["settings"] = info.Settings?.ToJsonObject(),
        });
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
            if (File.Exists(Path.Combine(candidate, Checkpoint.ConfigFile)) && File.Exists(Path.Combine(candidate, Checkpoint.WeightsFile)))
                return candidate;
        throw new LsvcrException($"{dir}: no model found (expected {Checkpoint.ConfigFile} and {Checkpoint.WeightsFile} in it or in {Path.Combine(dir, "best")})");
    }

    public static ModelInfo ReadInfo(string dir)
    {
        var info = Checkpoint.ReadInfo(dir);
        var m = info.Metadata;
        string where = Path.Combine(dir, Checkpoint.ConfigFile);
        return new ModelInfo
        {
            Task = (string?)m["task"] ?? throw new LsvcrException($"{where}: metadata.task is missing (not a fine-tuned model?)"),
            Variant = (string?)m["variant"] ?? Variants.Full,
            Config = info.Config,
            Epoch = (int?)m["epoch"] ?? 0,
            ValNdcg5 = (double?)m["val_ndcg@5"] ?? double.NaN,
            Settings = ReadSettings(m["settings"] as JsonObject),
        };
    }

    /// <summary>The stored settings are a record of the run; the model itself is rebuilt from <c>config</c>, so settings a
    /// newer version wrote (unknown keys) do not stop a load.</summary>
    private static TrainOptions? ReadSettings(JsonObject? stored)
    {
        if (stored is null) return null;
        try { return new TrainOptions().With(stored, "settings"); }
        catch (LsvcrException) { return null; }
    }

    /// <summary>Rebuilds the model of <paramref name="dir"/> (see <see cref="Locate"/>) over the given text embeddings.</summary>
        /// <summary>Rebuilds the model of <paramref name="dir"/> (see <see cref="Locate"/>) over the given text embeddings;
    /// <paramref name="cpuKernels"/> false = the plain modules.</summary>
    public static (RecCom Model, ModelInfo Info) Load(string dir, FloatMatrix photoEmbs, FloatMatrix commentEmbs, bool cpuKernels = true)
    {
        dir = Locate(dir);
        var info = ReadInfo(dir);
        var config = info.Config;
        if (config.PhotoCount != photoEmbs.Rows || config.CommentCount != commentEmbs.Rows || config.TextDim != photoEmbs.Cols)
            throw new LsvcrException(
                $"{dir}: the model was trained for {config.PhotoCount} videos / {config.CommentCount} comments with {config.TextDim}-d texts, " +
                $"but the embeddings hold {photoEmbs.Rows}×{photoEmbs.Cols} / {commentEmbs.Rows}×{commentEmbs.Cols}");
        // The initial weights are overwritten: drawn from a throwaway generator, not the process-wide one.
        using var scratch = new Generator(0);
        var model = Create(config, photoEmbs, commentEmbs, cpuKernels, scratch);
        model.Generator = null;
        LoadWeights(model, dir, exact: true);
        return (model, info);
    }

    /// <summary>A float32 CPU model; <paramref name="cpuKernels"/> false = the plain modules (see <see cref="ModelBackend.Select"/>).</summary>
    /// <param name="generator">The run's generator (initial weights, then the training draws: <see cref="RecCom.Generator"/>).</param>
    internal static RecCom Create(RecComConfig config, FloatMatrix photoEmbs, FloatMatrix commentEmbs, bool cpuKernels, Generator generator)
    {
        using var p = tensor(photoEmbs.Data, [photoEmbs.Rows, photoEmbs.Cols]);
        using var c = tensor(commentEmbs.Data, [commentEmbs.Rows, commentEmbs.Cols]);
        return new RecCom(config, p, c, ModelBackend.Select(CPU, ScalarType.Float32, cpuKernels), generator);
    }

    /// <summary>Loads weights from a checkpoint folder or a reference state-dict file. <paramref name="exact"/>: every
    /// parameter must match (resume, evaluation); otherwise stage-1 files may leave stage-2 weights fresh.</summary>
    internal static LoadReport LoadWeights(RecCom model, string path, bool exact)
    {
        var report = Checkpoint.LoadWeights(model, path);
        if (exact && !report.IsExact)
            throw new LsvcrException($"{path}: the checkpoint does not match the model (missing: {string.Join(", ", report.Missing)}; " +
                                     $"unexpected: {string.Join(", ", report.Unexpected)}; resized: {string.Join(", ", report.ShapeMismatches)})");
        return report;
    }
}
