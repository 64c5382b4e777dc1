using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using LSVCR.Modeling;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace LSVCR.Training;

/// <summary>
/// What turns <see cref="TrainOptions"/> into a run: settings files (JSON or YAML), the effective settings (the model
/// shape of an init checkpoint, reference defaults for the rest) and the model configuration they describe.
/// </summary>
public static partial class TrainSettings
{
    /// <summary>
    /// The settings a run actually uses, with nothing left null that has a value: the five shape settings come from the
    /// init checkpoint when there is one (a checkpoint folder's <c>config.json</c>, or a safetensors file's tensor
    /// shapes; a pickle's shapes are checked when its weights load) — a different value set explicitly is an error
    /// naming both — and otherwise from the reference defaults; the attention dropout is spelled out.
    /// Idempotent; throws <see cref="LsvcrException"/> for invalid settings (one message per problem).
    /// </summary>
    public static TrainOptions Resolve(TrainOptions o)
    {
        o.Check();
        var shape = o.Init is null ? null : InitShape(o.Init);
        var conflicts = new List<string>();
        int Pick(int? chosen, string key, int fallback)
        {
            if (shape is null || !shape.Values.TryGetValue(key, out var stored)) return chosen ?? fallback;
            if (chosen is int c && c != stored)
                conflicts.Add($"{key} {c} conflicts with the init checkpoint {shape.Source} ({key} {stored}): the model shape comes from the checkpoint");
            return stored;
        }
        var resolved = o with
        {
            Hidden = Pick(o.Hidden, "hidden", TrainOptions.DefaultHidden),
            Heads = Pick(o.Heads, "heads", TrainOptions.DefaultHeads),
            Layers = Pick(o.Layers, "layers", TrainOptions.DefaultLayers),
            MixLayers = Pick(o.MixLayers, "mix-layers", TrainOptions.DefaultMixLayers),
            Inner = Pick(o.Inner, "inner", TrainOptions.DefaultInner),
            AttentionDropout = o.EffectiveAttentionDropout,
        };
        if (conflicts.Count > 0) throw new LsvcrException(string.Join("; ", conflicts));
        resolved.Check();   // e.g. the checkpoint's hidden size with explicitly chosen heads
        return resolved;
    }

    /// <summary>The model configuration of (resolved) settings for a catalogue and text width, before the variant's switches.</summary>
    public static RecComConfig ModelConfig(TrainOptions o, int photoCount, int commentCount, int textDim) => new()
    {
        PhotoCount = photoCount, CommentCount = commentCount, TextDim = textDim,
        Hidden = o.Hidden ?? TrainOptions.DefaultHidden, Heads = o.Heads ?? TrainOptions.DefaultHeads,
        EncoderLayers = o.Layers ?? TrainOptions.DefaultLayers, MixLayers = o.MixLayers ?? TrainOptions.DefaultMixLayers,
        Inner = o.Inner ?? TrainOptions.DefaultInner,
        HiddenDropout = o.Dropout, AttentionDropout = o.EffectiveAttentionDropout, LayerNormEps = o.LayerNormEps,
        MaxPosition = o.MaxPosition, Temperature = o.Temperature, StandardStacking = o.StandardStacking,
    };

    /// <summary>AdamW over <paramref name="parameters"/> with every hyper-parameter taken from the settings (none left
    /// to TorchSharp's defaults, whose weight decay, for one, is 0.01).</summary>
    public static TorchSharp.Modules.AdamW Optimizer(IEnumerable<TorchSharp.Modules.Parameter> parameters, TrainOptions o) =>
        TorchSharp.torch.optim.AdamW(parameters, lr: o.Lr, beta1: o.AdamBeta1, beta2: o.AdamBeta2, eps: o.AdamEps,
            weight_decay: o.WeightDecay, amsgrad: false, maximize: false);

    /// <summary>One line for logs and the console: every setting as <c>key value</c>, in the order of <see cref="TrainOptions.Keys"/>.</summary>
    public static string Describe(TrainOptions o) =>
        string.Join(", ", o.ToJsonObject().Select(kv => $"{kv.Key} {kv.Value?.ToJsonString().Trim('"') ?? "–"}"));

    private sealed record Shape(string Source, IReadOnlyDictionary<string, int> Values);

    private static Shape InitShape(string init)
    {
        if (Directory.Exists(init))
        {
            var dir = ModelStore.Locate(init);
            var c = Checkpoint.ReadInfo(dir).Config;
            return new(Path.Combine(dir, Checkpoint.ConfigFile), new Dictionary<string, int>
            {
                ["hidden"] = c.Hidden, ["heads"] = c.Heads, ["layers"] = c.EncoderLayers, ["mix-layers"] = c.MixLayers, ["inner"] = c.Inner,
            });
        }
        if (!File.Exists(init)) throw new FileNotFoundException($"init: {init}: no such checkpoint file or folder", init);
        var values = new Dictionary<string, int>();
        if (Checkpoint.ReadShapes(init) is { } shapes)
        {
            if (shapes.TryGetValue("pposition_embedding.weight", out var pos) && pos.Length == 2) values["hidden"] = (int)pos[1];
            if (shapes.TryGetValue("phis_encoder.layer.0.feed_forward.linear_1.weight", out var ffn) && ffn.Length == 2) values["inner"] = (int)ffn[0];
            int Layers(string stack) => shapes.Keys.Select(k => LayerIndex().Match(k)).Where(m => m.Success && m.Groups[1].Value == stack)
                .Select(m => int.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture) + 1).DefaultIfEmpty(0).Max();
            if (Layers("phis_encoder") is > 0 and var layers) values["layers"] = layers;
            if (Layers("phis_mix_layer") is > 0 and var mix) values["mix-layers"] = mix;
        }
        return new($"{init} (tensor shapes)", values);
    }

    [GeneratedRegex(@"^(\w+)\.layer\.(\d+)\.")]
    private static partial Regex LayerIndex();

    // ── settings files ──

    /// <summary>
    /// Reads a settings file: JSON (<c>.json</c>) or YAML (<c>.yaml</c>, <c>.yml</c>), one object whose keys are those of
    /// <see cref="TrainOptions"/> (the flag names without <c>--</c>, e.g. <c>{"epochs": 1, "dropout": 0.1}</c>). Keys are
    /// checked when the object is applied (<see cref="TrainOptions.With"/>), so errors name the file and the key.
    /// </summary>
    public static JsonObject ReadFile(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: settings file not found", path);
        var text = File.ReadAllText(path);
        var ext = Path.GetExtension(path).ToLowerInvariant();
        JsonNode? node = ext switch
        {
            ".json" => ParseJson(text, path),
            ".yaml" or ".yml" => ParseYaml(text, path),
            _ => throw new LsvcrException($"{path}: a settings file is .json, .yaml or .yml"),
        };
        return node as JsonObject ?? throw new LsvcrException($"{path}: expected one object of settings, like {{\"epochs\": 1, \"dropout\": 0.1}}");
    }

    /// <summary><paramref name="baseline"/> with the settings of <paramref name="path"/> applied.</summary>
    public static TrainOptions ApplyFile(TrainOptions baseline, string path) => baseline.With(ReadFile(path), path);

    private static JsonNode? ParseJson(string text, string path)
    {
        try
        {
            return JsonNode.Parse(text, documentOptions: new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
        }
        catch (JsonException e)
        {
            throw new LsvcrException($"{path}: not valid JSON (line {e.LineNumber + 1}: {e.Message})", e);
        }
    }

    /// <summary>YAML → the JSON it stands for: plain scalars become null, booleans or numbers when they read as such
    /// (YAML 1.2 core schema), quoted scalars stay strings.</summary>
    private static JsonNode? ParseYaml(string text, string path)
    {
        var stream = new YamlStream();
        try { stream.Load(new StringReader(text)); }
        catch (YamlException e) { throw new LsvcrException($"{path}: not valid YAML (line {e.Start.Line}: {e.Message})", e); }
        if (stream.Documents.Count == 0) return new JsonObject();
        if (stream.Documents.Count > 1) throw new LsvcrException($"{path}: holds {stream.Documents.Count} YAML documents; a settings file is one");
        return Convert(stream.Documents[0].RootNode);

        JsonNode? Convert(YamlNode n) => n switch
        {
            YamlMappingNode map => Mapping(map),
            YamlSequenceNode seq => new JsonArray([.. seq.Children.Select(Convert)]),
            YamlScalarNode s => Scalar(s),
            _ => throw new LsvcrException($"{path}: line {n.Start.Line}: unsupported YAML node (aliases are not used in settings files)"),
        };

        JsonObject Mapping(YamlMappingNode map)
        {
            var o = new JsonObject();
            foreach (var (k, v) in map.Children)
            {
                var key = (k as YamlScalarNode)?.Value ?? throw new LsvcrException($"{path}: line {k.Start.Line}: keys are plain names");
                o[key] = Convert(v);
            }
            return o;
        }

        static JsonNode? Scalar(YamlScalarNode s)
        {
            var v = s.Value ?? "";
            if (s.Style is not ScalarStyle.Plain) return JsonValue.Create(v);
            if (v is "" or "~" or "null" or "Null" or "NULL") return null;
            if (v is "true" or "True" or "TRUE") return JsonValue.Create(true);
            if (v is "false" or "False" or "FALSE") return JsonValue.Create(false);
            if (long.TryParse(v, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var l)) return JsonValue.Create(l);
            if (double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out var d)) return JsonValue.Create(d);
            return JsonValue.Create(v);
        }
    }
}
