using System.Collections;
using System.Text.Json;
using System.Text.Json.Nodes;
using LSVCR.Data;
using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace LSVCR.Modeling;

/// <summary>What a weight load did: every list is empty for an exact match.</summary>
/// <param name="Missing">Model keys the file lacks, left at their current (initial) values — excluding <paramref name="FreshInitialised"/>.</param>
/// <param name="Unexpected">File keys (as stored) the model does not have — LLM, LoRA, llm_emb_mlp, contrast_adapter, … — ignored.</param>
/// <param name="ShapeMismatches">Keys loaded despite a shape difference, as "key: [from] → [to] (how)" — only the position tables (resized).</param>
/// <param name="FreshInitialised">Stage-2 weights absent from a stage-1 file (<c>photo_embedding</c>, <c>gate</c>): kept freshly initialised.</param>
public sealed record LoadReport(
    IReadOnlyList<string> Missing,
    IReadOnlyList<string> Unexpected,
    IReadOnlyList<string> ShapeMismatches,
    IReadOnlyList<string> FreshInitialised)
{
    public int Loaded { get; init; }
    public bool IsExact => Missing.Count == 0 && Unexpected.Count == 0 && ShapeMismatches.Count == 0 && FreshInitialised.Count == 0;
}

/// <summary>config.json of a checkpoint folder: the model's shape plus the caller's free-form metadata
/// (dataset hash, embeddings manifest, seed, code version, task, variant, …).</summary>
public sealed record CheckpointInfo(RecComConfig Config, JsonObject Metadata);

/// <summary>
/// RecCom checkpoints. Our format is a folder with <c>model.safetensors</c> (reference parameter names, no text tables)
/// and <c>config.json</c>. Reference PyTorch state dicts (<c>.pt</c>/<c>.bin</c> pickles or <c>.safetensors</c>, keys
/// with or without <c>reccom.</c> / <c>base_model.model.</c> / <c>module.</c> prefixes) load through the same rules
/// (MODEL.md §3): stage-1 files get fresh <c>photo_embedding</c>/<c>gate</c>, position tables of another length are
/// resized (rows copied, extra rows = mean row, or truncated), other shape mismatches are errors.
/// </summary>
public static class Checkpoint
{
    public const string WeightsFile = "model.safetensors";
    public const string ConfigFile = "config.json";
    public const string Format = "lsvcr-reccom/1";

    private static readonly string[] Prefixes = ["base_model.model.", "module.", "reccom."];
    private static readonly HashSet<string> StageTwoKeys = ["photo_embedding.weight", "gate"];
    private static readonly HashSet<string> PositionKeys = ["pposition_embedding.weight", "cposition_embedding.weight"];

    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true };

    /// <summary>Writes <paramref name="dir"/>/model.safetensors and config.json (temp names, then renamed; config.json
    /// last, so a folder with a config.json is complete).</summary>
    public static void Save(RecCom model, string dir, JsonObject? metadata = null)
    {
        Directory.CreateDirectory(dir);
        var weights = Path.Combine(dir, WeightsFile);
        var config = Path.Combine(dir, ConfigFile);
        var tag = $".tmp-{Environment.ProcessId}-{Guid.NewGuid():N}";
        var weightsTmp = weights + tag;
        var configTmp = config + tag;
        try
        {
            var state = model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach().contiguous().cpu());
            Safetensors.SaveStateDict(weightsTmp, state);
            var doc = new JsonObject
            {
                ["format"] = Format,
                ["config"] = JsonSerializer.SerializeToNode(model.Config, Json),
                ["metadata"] = metadata?.DeepClone() ?? new JsonObject(),
            };
            File.WriteAllText(configTmp, doc.ToJsonString(Json));
            File.Move(weightsTmp, weights, overwrite: true);
            File.Move(configTmp, config, overwrite: true);
        }
        finally
        {
            File.Delete(weightsTmp);
            File.Delete(configTmp);
        }
    }

    /// <summary>Reads config.json of a checkpoint folder.</summary>
    public static CheckpointInfo ReadInfo(string dir)
    {
        var path = Path.Combine(dir, ConfigFile);
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no checkpoint config (is {dir} a checkpoint folder?)", path);
        try
        {
            var doc = JsonNode.Parse(File.ReadAllText(path)) as JsonObject
                      ?? throw new LsvcrException($"{path}: not a JSON object");
            if ((string?)doc["format"] != Format)
                throw new LsvcrException($"{path}: field \"format\" is {doc["format"]?.ToJsonString() ?? "missing"}, expected \"{Format}\"");
            var config = doc["config"]?.Deserialize<RecComConfig>(Json)
                         ?? throw new LsvcrException($"{path}: field \"config\" is missing");
            var metadata = doc["metadata"] as JsonObject ?? new JsonObject();
            return new CheckpointInfo(config, (JsonObject)metadata.DeepClone());
        }
        catch (JsonException e)
        {
            throw new LsvcrException($"{path}: invalid checkpoint config: {e.Message}", e);
        }
    }

    /// <summary>Builds the model from a checkpoint folder and the text tables it was trained with.</summary>
    public static (RecCom Model, CheckpointInfo Info, LoadReport Report) Load(string dir, Tensor photoText, Tensor commentText, ModelBackend? backend = null)
    {
        var info = ReadInfo(dir);
        RecCom model;
        // The initial weights are overwritten: drawn from a throwaway generator, not the process-wide one.
        using var scratch = new Generator(0);
        try { model = new RecCom(info.Config, photoText, commentText, backend, scratch) { Generator = null }; }
        catch (ArgumentException e) { throw new LsvcrException($"{Path.Combine(dir, ConfigFile)}: {e.Message}", e); }
        try
        {
            var report = LoadWeights(model, Path.Combine(dir, WeightsFile));
            return (model, info, report);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Loads weights into <paramref name="model"/> from a checkpoint folder, a <c>.safetensors</c> file, or a PyTorch
    /// state-dict pickle (<c>.pt</c>, <c>.bin</c>, …). Unknown keys are ignored and reported.
    /// </summary>
    public static LoadReport LoadWeights(RecCom model, string path)
    {
        if (Directory.Exists(path)) path = Path.Combine(path, WeightsFile);
        var source = ReadStateDict(path);
        try
        {
            return Apply(model, source, path);
        }
        finally
        {
            foreach (var t in source.Values) t.Dispose();
        }
    }

    /// <summary>Reads a safetensors file or a PyTorch state-dict pickle into name → tensor (names as stored).</summary>
    public static Dictionary<string, Tensor> ReadStateDict(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: file not found", path);
        var safetensors = path.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase) || LooksLikeSafetensors(path);
        try
        {
            if (safetensors) return Safetensors.LoadStateDict(path);
            var table = PyTorchUnpickler.UnpickleStateDict(path);
            var result = new Dictionary<string, Tensor>();
            Flatten(table, "", result);
            if (result.Count == 0) throw new LsvcrException($"{path}: the pickle holds no tensors");
            return result;
        }
        catch (LsvcrException) { throw; }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new LsvcrException($"{path}: not a readable {(safetensors ? "safetensors" : "PyTorch state-dict")} file ({e.Message})", e);
        }
    }

    /// <summary>
    /// Tensor shapes of a safetensors file by normalised parameter name, read from its JSON header alone (a stage-1 file
    /// may hold a whole LLM: its weights are not read). Null for other formats: a pickle's shapes need the whole file.
    /// </summary>
    public static IReadOnlyDictionary<string, long[]>? ReadShapes(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: file not found", path);
        if (!LooksLikeSafetensors(path)) return null;
        try
        {
            using var f = File.OpenRead(path);
            var head = new byte[8];
            f.ReadExactly(head);
            var header = new byte[BitConverter.ToUInt64(head)];
            f.ReadExactly(header);
            var shapes = new Dictionary<string, long[]>();
            foreach (var (key, entry) in JsonNode.Parse(header)!.AsObject())
                if (key != "__metadata__" && entry?["shape"] is JsonArray shape)
                    shapes.TryAdd(Normalise(key), [.. shape.Select(d => (long)d!)]);
            return shapes;
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException or EndOfStreamException)
        {
            throw new LsvcrException($"{path}: unreadable safetensors header ({e.Message})", e);
        }
    }

    /// <summary>Safetensors starts with an 8-byte little-endian header length followed by '{'.</summary>
    private static bool LooksLikeSafetensors(string path)
    {
        using var f = File.OpenRead(path);
        Span<byte> head = stackalloc byte[9];
        if (f.Read(head) < 9) return false;
        var length = BitConverter.ToUInt64(head[..8]);
        return head[8] == (byte)'{' && length > 1 && length < (ulong)f.Length;
    }

    /// <summary>Checkpoints saved as {"state_dict": {...}} / {"model": {...}} nest the tensors one level down.</summary>
    private static void Flatten(IDictionary table, string prefix, Dictionary<string, Tensor> into)
    {
        foreach (DictionaryEntry e in table)
        {
            var key = prefix + e.Key;
            switch (e.Value)
            {
                case Tensor t: into[key] = t; break;
                case IDictionary nested when prefix.Length == 0 && e.Key is "state_dict" or "model" or "module":
                    Flatten(nested, "", into); break;
            }
        }
    }

    internal static string Normalise(string key)
    {
        var changed = true;
        while (changed)
        {
            changed = false;
            foreach (var p in Prefixes)
                if (key.StartsWith(p, StringComparison.Ordinal)) { key = key[p.Length..]; changed = true; }
        }
        return key;
    }

    private static LoadReport Apply(RecCom model, Dictionary<string, Tensor> source, string path)
    {
        var target = model.state_dict();
        var byName = new Dictionary<string, (string Original, Tensor Value)>();
        var unexpected = new List<string>();
        foreach (var (key, value) in source)
        {
            var name = Normalise(key);
            if (target.ContainsKey(name) && !byName.ContainsKey(name)) byName[name] = (key, value);
            else unexpected.Add(key);
        }

        var missing = new List<string>();
        var fresh = new List<string>();
        var mismatches = new List<string>();
        // Validate everything before touching the model, so a failed load leaves it as it was.
        var plan = new List<(Tensor To, Tensor From)>();
        foreach (var (name, param) in target)
        {
            if (!byName.TryGetValue(name, out var src))
            {
                (StageTwoKeys.Contains(name) ? fresh : missing).Add(name);
                continue;
            }
            var from = src.Value;
            if (!from.is_floating_point())
                throw new LsvcrException($"{path}: \"{src.Original}\" has dtype {from.dtype}, expected a floating-point tensor");
            if (from.shape.SequenceEqual(param.shape) || (from.numel() == 1 && param.numel() == 1))
            {
                plan.Add((param, from.reshape(param.shape)));
            }
            else if (PositionKeys.Contains(name) && from.dim() == 2 && from.shape[1] == param.shape[1])
            {
                plan.Add((param, ResizePositions(from, param.shape[0])));
                mismatches.Add($"{src.Original}: [{string.Join(", ", from.shape)}] → [{string.Join(", ", param.shape)}] (resized: rows copied, extra rows = mean row)");
            }
            else
            {
                throw new LsvcrException(
                    $"{path}: \"{src.Original}\" has shape [{string.Join(", ", from.shape)}], the model expects [{string.Join(", ", param.shape)}] for {name} (config: {model.Config.PhotoCount} videos, {model.Config.CommentCount} comments, hidden {model.Config.Hidden}, text {model.Config.TextDim})");
            }
        }
        using (no_grad())
        {
            foreach (var (to, from) in plan)
                to.copy_(from.to(ScalarType.Float32));
        }
        return new LoadReport(missing, unexpected, mismatches, fresh) { Loaded = plan.Count };
    }

    /// <summary>MODEL.md §3: copy the first rows; extra rows = mean of the source rows; truncate if shorter.</summary>
    internal static Tensor ResizePositions(Tensor from, long rows)
    {
        var source = from.to(ScalarType.Float32);
        var have = source.shape[0];
        if (rows <= have) return source.narrow(0, 0, rows);
        var mean = source.mean([0], keepdim: true).expand(rows - have, source.shape[1]);
        return cat([source, mean], 0);
    }
}
