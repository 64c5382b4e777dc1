using System.Text.Json;
using System.Text.Json.Nodes;
using LSVCR.Data;
using LSVCR.Modeling;
using LSVCR.Training;
using Onnx;
using static TorchSharp.torch;

namespace LSVCR.Serving.Export;

/// <summary>What <c>lsvcr export</c> reads.</summary>
public sealed record ExportOptions
{
    /// <summary>The Rec run folder (or its <c>best</c> checkpoint).</summary>
    public required string Rec { get; init; }
    /// <summary>The CommRank run folder (or its <c>best</c> checkpoint).</summary>
    public required string CommRank { get; init; }
    public required string Data { get; init; }
    public required string Embeddings { get; init; }
    public required string Out { get; init; }
    /// <summary>The training run the checkpoints belong to (default: the folder holding the rec/ and commrank/ runs).</summary>
    public string? TrainingRun { get; init; }
    /// <summary>What the manifest names as the dataset / embeddings (default: their full paths; the publish step
    /// gives the artifact sets, since its paths are a worker's cache).</summary>
    public string? DatasetLabel { get; init; }
    public string? EmbeddingsLabel { get; init; }
}

/// <summary>
/// Builds the serving bundle (docs/serving.md): the two user encoders as ONNX graphs from the checkpoints' weights,
/// the normalised candidate vectors, the external-id maps, each video's comment list, the popularity ranking and a
/// manifest (written last) whose model version is a hash of the files. The files are written into a staging folder
/// beside <see cref="ExportOptions.Out"/> and moved into place, so a folder with a manifest is always complete.
/// </summary>
public static class BundleExporter
{
    public static BundleManifest Export(ExportOptions o, IProgress<JobProgress>? progress = null)
    {
        progress?.Report(new("read dataset", 0, 4));
        var data = ReferenceLayout.Read(o.Data);
        var catalog = data.Catalog;
        var (photoEmbs, commentEmbs) = TextEmbeddings.Load(o.Embeddings, catalog);
        var full = Path.GetFullPath(o.Out);
        var staging = Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileName(full)}.{Environment.ProcessId}.export");
        if (Directory.Exists(staging)) Directory.Delete(staging, recursive: true);
        Directory.CreateDirectory(staging);
        try
        {
            progress?.Report(new("rec encoder", 1, 4));
            var rec = ExportModel(o.Rec, TaskKind.Rec, catalog, photoEmbs, commentEmbs, staging);
            progress?.Report(new("commrank encoder", 2, 4));
            var commRank = ExportModel(o.CommRank, TaskKind.CommRank, catalog, photoEmbs, commentEmbs, staging);
            if (rec.Shape.Hidden != commRank.Shape.Hidden || rec.MaxPosition != commRank.MaxPosition || rec.Shape.Temperature != commRank.Shape.Temperature)
                throw new LsvcrException($"{o.Rec} and {o.CommRank}: the two models differ in hidden size, history window or temperature " +
                                         $"({rec.Shape.Hidden}/{rec.MaxPosition}/{rec.Shape.Temperature} vs {commRank.Shape.Hidden}/{commRank.MaxPosition}/{commRank.Shape.Temperature})");
            progress?.Report(new("catalogue", 3, 4));
            WriteCatalogue(data, staging);
            var files = Directory.GetFiles(staging).Select(Path.GetFileName).OfType<string>().Order(StringComparer.Ordinal)
                .Select(n => BundleManifest.Describe(staging, n)).ToList();
            var manifest = new BundleManifest
            {
                ModelVersion = BundleManifest.VersionOf(files),
                CreatedAt = DateTimeOffset.UtcNow,
                TrainingRun = o.TrainingRun ?? Path.GetFullPath(Path.Combine(ModelStore.Locate(o.Rec), "..", "..", "..")),
                Dataset = o.DatasetLabel ?? Path.GetFullPath(o.Data),
                Embeddings = o.EmbeddingsLabel ?? Path.GetFullPath(o.Embeddings),
                Videos = catalog.PhotoCount - 1,
                Comments = catalog.CommentCount - 1,
                Hidden = rec.Shape.Hidden,
                MaxHistory = rec.MaxPosition,
                Temperature = rec.Shape.Temperature,
                Rec = rec.Info,
                CommRank = commRank.Info,
                Files = files,
            };
            File.WriteAllText(Path.Combine(staging, BundleManifest.FileName), manifest.ToJson());
            ModelStoreReplace(staging, full);
            progress?.Report(new("done", 4, 4));
            return manifest;
        }
        finally
        {
            if (Directory.Exists(staging)) Directory.Delete(staging, recursive: true);
        }
    }

    private static void ModelStoreReplace(string staging, string dir)
    {
        var old = dir + ".old";
        if (Directory.Exists(old)) Directory.Delete(old, recursive: true);
        if (Directory.Exists(dir)) Directory.Move(dir, old);
        Directory.Move(staging, dir);
        if (Directory.Exists(old)) Directory.Delete(old, recursive: true);
    }

    private sealed record Exported(EncoderInfo Info, EncoderShape Shape, int MaxPosition);

    private static Exported ExportModel(string dir, TaskKind task, Catalog catalog, FloatMatrix photoEmbs, FloatMatrix commentEmbs, string into)
    {
        var located = ModelStore.Locate(dir);
        var (model, info) = ModelStore.Load(located, photoEmbs, commentEmbs);
        using (model)
        {
            var taskName = Protocols.TaskName(task);
            if (info.Task != taskName)
                throw new LsvcrException($"{Path.Combine(located, Checkpoint.ConfigFile)}: metadata.task is \"{info.Task}\", expected \"{taskName}\"");
            var c = model.Config;
            if (!c.UseText)
                throw new LsvcrException($"{Path.Combine(located, Checkpoint.ConfigFile)}: the {info.Variant} variant has no item texts (UseText=false); export supports the text variants (full, text-only, no-comments)");
            var shape = new EncoderShape(c.Hidden, c.Heads, c.EncoderLayers, c.MixLayers, (float)c.LayerNormEps, (float)c.Temperature, c.StandardStacking);
            var tables = EncoderTables.Compute(model, catalog, photoEmbs, commentEmbs);
            var weights = StateDict(model);
            Weight W(string name) => weights.TryGetValue(name, out var w) ? w
                : throw new LsvcrException($"{located}: the checkpoint has no \"{name}\" (have {string.Join(", ", weights.Keys.Take(8))}, …)");
            var graph = UserEncoderGraph.Build(task == TaskKind.Rec, W, shape, tables.History, tables.EntryTitles, task == TaskKind.CommRank ? tables.Query : null,
                task == TaskKind.Rec ? new Weight(tables.VideoVectors.Data, [tables.VideoVectors.Rows, tables.VideoVectors.Cols]) : null);
            graph.WriteToFile(Path.Combine(into, task == TaskKind.Rec ? BundleFiles.RecEncoder : BundleFiles.CommRankEncoder));
            if (task == TaskKind.Rec)
            {
                Npy.Write(Path.Combine(into, BundleFiles.VideoVectors), tables.VideoVectors);
                Npy.Write(Path.Combine(into, BundleFiles.RecCommentVectors), tables.CommentVectors);
                Npy.Write(Path.Combine(into, BundleFiles.RecCommentNorms), tables.CommentNorms);
            }
            else
            {
                Npy.Write(Path.Combine(into, BundleFiles.CommentVectors), tables.CommentVectors);
                Npy.Write(Path.Combine(into, BundleFiles.CommentNorms), tables.CommentNorms);
            }
            return new Exported(new EncoderInfo
            {
                Task = taskName, Variant = info.Variant, Epoch = info.Epoch,
                ValNdcg5 = double.IsFinite(info.ValNdcg5) ? info.ValNdcg5 : null,
                Checkpoint = Path.GetFullPath(located),
                UsesCommentHistory = !Variants.DropsComments(info.Variant),
                TestMetrics = ReadTestMetrics(located),
            }, shape, c.MaxPosition);
        }
    }

    /// <summary>The run's test-metrics.json (beside <c>best/</c>), its results only; null when there is none.</summary>
    private static JsonNode? ReadTestMetrics(string checkpoint)
    {
        foreach (var dir in new[] { checkpoint, Path.GetDirectoryName(Path.GetFullPath(checkpoint))! })
        {
            var path = Path.Combine(dir, ExperimentRunner.TestMetricsFile);
            if (!File.Exists(path)) continue;
            try { return JsonNode.Parse(File.ReadAllText(path))?["Results"]?.DeepClone(); }
            catch (JsonException e) { throw new LsvcrException($"{path}: unreadable test metrics ({e.Message})", e); }
        }
        return null;
    }

    private static Dictionary<string, Weight> StateDict(RecCom model)
    {
        var result = new Dictionary<string, Weight>();
        foreach (var (name, t) in model.state_dict())
        {
            using var f = t.detach().to(ScalarType.Float32).contiguous();
            result[name] = new Weight(f.data<float>().ToArray(), f.shape.Length == 0 ? [1] : f.shape);
        }
        return result;
    }

    private static void WriteCatalogue(LsvcrDataset data, string into)
    {
        var catalog = data.Catalog;
        WriteJson(Path.Combine(into, BundleFiles.VideoIds), w => Strings(w, catalog.PhotoIds));
        WriteJson(Path.Combine(into, BundleFiles.CommentIds), w => Strings(w, catalog.CommentIds));
        WriteJson(Path.Combine(into, BundleFiles.VideoComments), w =>
        {
            w.WriteStartObject();
            w.WritePropertyName("offsets");
            Ints(w, catalog.PhotoCommentOffsets);
            w.WritePropertyName("comments");
            Ints(w, catalog.PhotoComments);
            w.WriteEndObject();
        });
        // The fallback: Rec training-target counts (the popularity baseline's), ties by internal id.
        var counts = new int[catalog.PhotoCount];
        foreach (int t in data[TaskKind.Rec, Split.Train].TargetPhoto) if (t > 0 && t < counts.Length) counts[t]++;
        var ranking = Enumerable.Range(1, catalog.PhotoCount - 1).OrderByDescending(v => counts[v]).ThenBy(v => v).ToArray();
        WriteJson(Path.Combine(into, BundleFiles.Popularity), w =>
        {
            w.WriteStartObject();
            w.WritePropertyName("videos");
            Ints(w, ranking);
            w.WritePropertyName("counts");
            Ints(w, [.. ranking.Select(v => counts[v])]);
            w.WriteEndObject();
        });
    }

    private static void WriteJson(string path, Action<Utf8JsonWriter> body)
    {
        using var stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
        using var w = new Utf8JsonWriter(stream);
        body(w);
    }

    private static void Strings(Utf8JsonWriter w, string[] values)
    {
        w.WriteStartArray();
        foreach (var v in values) w.WriteStringValue(v);
        w.WriteEndArray();
    }

    private static void Ints(Utf8JsonWriter w, int[] values)
    {
        w.WriteStartArray();
        foreach (var v in values) w.WriteNumberValue(v);
        w.WriteEndArray();
    }
}
