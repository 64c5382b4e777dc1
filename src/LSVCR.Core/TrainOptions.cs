using System.Globalization;
using System.Reflection;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace LSVCR.Core;

/// <summary>
/// The settings of one stage-2 training run (MODEL.md §2 and §4): model hyper-parameters, AdamW, schedule, batching,
/// stopping, losses and seeds. Defaults are the reference run's, except the epoch count. Serialised with the JSON keys
/// below — the same names as the <c>lsvcr train</c> flags — this is what a settings file (<c>--config run.json</c>),
/// a run request over HTTP, a checkpoint's <c>config.json</c>, <c>history.json</c> and the experiment report hold, so
/// all of them mean the same thing. Unknown keys are rejected (<see cref="JsonUnmappedMemberHandling.Disallow"/>).
/// It lives in LSVCR.Core, without tensor packages, so the services can accept it as it is.
/// </summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record TrainOptions
{
    // ── schedule and stopping ──
    [JsonPropertyName("epochs")] public int Epochs { get; init; } = 50;
    [JsonPropertyName("batch")] public int BatchSize { get; init; } = 512;
    /// <summary>Stop after this many epochs without a better validation ndcg@5.</summary>
    [JsonPropertyName("patience")] public int Patience { get; init; } = 5;
    /// <summary><c>constant</c> or <c>linear</c> (linear decay to 0 at the last step); both after the warmup.</summary>
    [JsonPropertyName("schedule")] public string Schedule { get; init; } = "constant";
    /// <summary>Warmup as a fraction of all training steps: ceil(warmup × steps) steps whose learning rate rises linearly
    /// from 0 (the first step's) towards <see cref="Lr"/>, as Hugging Face's schedulers do (0 = none; 0.03 = stage 1).</summary>
    [JsonPropertyName("warmup")] public double Warmup { get; init; }

    // ── AdamW: every hyper-parameter explicit, so a library default that changes between releases cannot move a run ──
    [JsonPropertyName("lr")] public double Lr { get; init; } = 1e-3;
    [JsonPropertyName("weight-decay")] public double WeightDecay { get; init; } = 1e-5;
    [JsonPropertyName("adam-beta1")] public double AdamBeta1 { get; init; } = 0.9;
    [JsonPropertyName("adam-beta2")] public double AdamBeta2 { get; init; } = 0.999;
    [JsonPropertyName("adam-eps")] public double AdamEps { get; init; } = 1e-8;

    // ── losses and sampling ──
    [JsonPropertyName("id-text-weight")] public double IdTextWeight { get; init; } = 0.1;
    /// <summary>Rec: null = full softmax over all videos, k = sampled softmax with k uniform negatives.
    /// CommRank: negatives per positive (null = the reference's 19).</summary>
    [JsonPropertyName("negatives")] public int? Negatives { get; init; }
    [JsonPropertyName("seed")] public int Seed { get; init; } = 42;

    // ── model (MODEL.md §2). The five shape settings are null when not chosen: the reference default, or with
    //    Init a checkpoint folder, that checkpoint's value (a different explicit value is an error) ──
    [JsonPropertyName("hidden")] public int? Hidden { get; init; }
    [JsonPropertyName("heads")] public int? Heads { get; init; }
    /// <summary>Encoder layers of each history (<c>phis_encoder</c>, <c>chis_encoder</c>).</summary>
    [JsonPropertyName("layers")] public int? Layers { get; init; }
    /// <summary>Cross-behaviour mixing layers (<c>phis_mix_layer</c>, <c>chis_mix_layer</c>).</summary>
    [JsonPropertyName("mix-layers")] public int? MixLayers { get; init; }
    /// <summary>FFN inner size.</summary>
    [JsonPropertyName("inner")] public int? Inner { get; init; }
    /// <summary>Hidden dropout, and attention dropout too unless <see cref="AttentionDropout"/> is set.</summary>
    [JsonPropertyName("dropout")] public double Dropout { get; init; } = 0.3;
    [JsonPropertyName("attention-dropout")] public double? AttentionDropout { get; init; }
    /// <summary>Longest history; longer ones keep their most recent entries. Position tables of an init checkpoint
    /// with another length are resized (MODEL.md §3).</summary>
    [JsonPropertyName("max-position")] public int MaxPosition { get; init; } = 50;
    [JsonPropertyName("temperature")] public double Temperature { get; init; } = 0.07;
    [JsonPropertyName("layer-norm-eps")] public double LayerNormEps { get; init; } = 1e-8;
    /// <summary>Each encoder layer attends to the previous layer's output (off = the reference's stacking, MODEL.md §2.1).</summary>
    [JsonPropertyName("standard-stacking")] public bool StandardStacking { get; init; }

    // ── where to start and how to run ──
    /// <summary>Stage-1 (or any RecCom) checkpoint to start from; null = fresh N(0, 0.02) initialisation.</summary>
    [JsonPropertyName("init")] public string? Init { get; init; }
    /// <summary>libtorch intra-op threads (null = libtorch's default, one per core). A process-wide setting; on small
    /// shared machines 1 is often fastest (oversubscribed OpenMP threads spin). Not part of the resume check.</summary>
    [JsonPropertyName("threads")] public int? Threads { get; init; }
    /// <summary>Data-parallel slices of each batch (SrLoss.Backward): run concurrently when there is a thread per
    /// slice; the result does not depend on the thread count, but does on this number.</summary>
    [JsonPropertyName("shards")] public int Shards { get; init; } = DefaultShards;
    /// <summary>Batches assembled ahead of the model on the background thread.</summary>
    [JsonPropertyName("prefetch")] public int Prefetch { get; init; } = 3;
    /// <summary>Run the model on the fused CPU kernels where they apply (ModelBackend.Select: CPU, float32, AVX2+FMA);
    /// false = the plain TorchSharp modules (<c>--no-cpu-kernels</c>). Not part of the resume check.</summary>
    [JsonPropertyName("cpu-kernels")] public bool CpuKernels { get; init; } = true;

    /// <summary>Reference model shape (MODEL.md §2), the values of the null shape settings; RecComConfig's defaults
    /// (a test keeps the two equal).</summary>
    public const int DefaultHidden = 64, DefaultHeads = 2, DefaultLayers = 2, DefaultMixLayers = 1, DefaultInner = 256;
    /// <summary>SrLoss.DefaultShards (a test keeps the two equal).</summary>
    public const int DefaultShards = 2;
    public const int DefaultCommRankNegatives = 19;

    /// <summary>The attention dropout in effect.</summary>
    [JsonIgnore] public double EffectiveAttentionDropout => AttentionDropout ?? Dropout;

    /// <summary>One message per problem, naming the setting by its key (empty = valid).</summary>
    public IReadOnlyList<string> Validate()
    {
        var problems = new List<string>();
        void Require(bool ok, string message) { if (!ok) problems.Add(message); }
        static string F(double x) => x.ToString("R", CultureInfo.InvariantCulture);

        Require(Epochs >= 1, $"epochs must be at least 1 (got {Epochs})");
        Require(BatchSize >= 1, $"batch must be at least 1 (got {BatchSize})");
        Require(Patience >= 1, $"patience must be at least 1 (got {Patience})");
        Require(Schedule is "constant" or "linear", $"schedule must be constant or linear (got '{Schedule}')");
        Require(Warmup is >= 0 and < 1, $"warmup is a fraction of the training steps in [0, 1) (got {F(Warmup)})");
        Require(Lr > 0 && double.IsFinite(Lr), $"lr must be a positive number (got {F(Lr)})");
        Require(WeightDecay >= 0 && double.IsFinite(WeightDecay), $"weight-decay must be ≥ 0 (got {F(WeightDecay)})");
        Require(AdamBeta1 is >= 0 and < 1, $"adam-beta1 must be in [0, 1) (got {F(AdamBeta1)})");
        Require(AdamBeta2 is >= 0 and < 1, $"adam-beta2 must be in [0, 1) (got {F(AdamBeta2)})");
        Require(AdamEps > 0 && double.IsFinite(AdamEps), $"adam-eps must be a positive number (got {F(AdamEps)})");
        Require(IdTextWeight >= 0 && double.IsFinite(IdTextWeight), $"id-text-weight must be ≥ 0 (got {F(IdTextWeight)})");
        Require(Negatives is null or >= 1, $"negatives must be at least 1 (got {Negatives})");
        Require(Hidden is null or >= 1, $"hidden must be at least 1 (got {Hidden})");
        Require(Heads is null or >= 1, $"heads must be at least 1 (got {Heads})");
        if (Hidden is not < 1 && Heads is not < 1)
        {
            int hidden = Hidden ?? DefaultHidden, heads = Heads ?? DefaultHeads;
            Require(hidden % heads == 0, $"hidden ({hidden}) must be divisible by heads ({heads})");
        }
        Require(Layers is null or >= 1, $"layers must be at least 1 (got {Layers})");
        Require(MixLayers is null or >= 1, $"mix-layers must be at least 1 (got {MixLayers})");
        Require(Inner is null or >= 1, $"inner must be at least 1 (got {Inner})");
        Require(Dropout is >= 0 and < 1, $"dropout must be in [0, 1) (got {F(Dropout)})");
        Require(AttentionDropout is null or (>= 0 and < 1), $"attention-dropout must be in [0, 1) (got {F(AttentionDropout ?? 0)})");
        Require(MaxPosition >= 1, $"max-position must be at least 1 (got {MaxPosition})");
        Require(Temperature > 0 && double.IsFinite(Temperature), $"temperature must be a positive number (got {F(Temperature)})");
        Require(LayerNormEps > 0 && double.IsFinite(LayerNormEps), $"layer-norm-eps must be a positive number (got {F(LayerNormEps)})");
        Require(Init is null || Init.Length > 0, "init must be a checkpoint path (got an empty string)");
        Require(Threads is null or >= 1, $"threads must be at least 1 (got {Threads})");
        Require(Shards >= 1, $"shards must be at least 1 (got {Shards})");
        Require(Prefetch >= 1, $"prefetch must be at least 1 (got {Prefetch})");
        return problems;
    }

    /// <summary>Throws one <see cref="LsvcrException"/> listing every problem of <see cref="Validate"/> ("; "-separated).</summary>
    public void Check()
    {
        var problems = Validate();
        if (problems.Count > 0) throw new LsvcrException($"invalid training settings: {string.Join("; ", problems)}");
    }

    // ── JSON form ──

    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true };
    /// <summary>Key → (type, whether null is allowed).</summary>
    private static readonly Dictionary<string, (Type Type, bool Nullable)> KeyTypes = typeof(TrainOptions).GetProperties()
        .Select(p => (Name: p.GetCustomAttribute<JsonPropertyNameAttribute>()?.Name, p.PropertyType,
                      Nullable: new NullabilityInfoContext().Create(p).WriteState == NullabilityState.Nullable))
        .Where(p => p.Name is not null).ToDictionary(p => p.Name!, p => (p.PropertyType, p.Nullable));

    /// <summary>Every key of the JSON form, in declaration order.</summary>
    public static IReadOnlyList<string> Keys { get; } = [.. typeof(TrainOptions).GetProperties()
        .Select(p => p.GetCustomAttribute<JsonPropertyNameAttribute>()?.Name).OfType<string>()];

    public JsonObject ToJsonObject() => JsonSerializer.SerializeToNode(this, Json)!.AsObject();

    public string ToJson() => JsonSerializer.Serialize(this, Json);

    /// <summary>These settings with the keys of <paramref name="layer"/> replaced (a settings file over the defaults, flags
    /// over a file). <paramref name="source"/> names the layer in errors: an unknown key or a value of the wrong type.</summary>
    public TrainOptions With(JsonObject layer, string source)
    {
        var merged = ToJsonObject();
        foreach (var (key, value) in layer)
        {
            if (!KeyTypes.TryGetValue(key, out var kind))
                throw new LsvcrException($"{source}: unknown key \"{key}\" (known keys: {string.Join(", ", Keys)})");
            try
            {
                if (value is null ? !kind.Nullable : value.Deserialize(kind.Type, Json) is null) throw new JsonException("null");
            }
            catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException)
            {
                throw new LsvcrException($"{source}: \"{key}\" must be {Describe(kind.Type, kind.Nullable)} (got {value?.ToJsonString() ?? "null"})", e);
            }
            merged[key] = value?.DeepClone();
        }
        return merged.Deserialize<TrainOptions>(Json)!;
    }

    /// <summary>Reads a JSON settings object (all keys optional; missing keys keep the defaults).</summary>
    public static TrainOptions FromJson(string json, string source)
    {
        JsonNode? node;
        try { node = JsonNode.Parse(json, documentOptions: new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true }); }
        catch (JsonException e) { throw new LsvcrException($"{source}: not valid JSON ({e.Message})", e); }
        if (node is not JsonObject obj) throw new LsvcrException($"{source}: expected a JSON object of settings, like {{\"epochs\": 1, \"dropout\": 0.1}}");
        return new TrainOptions().With(obj, source);
    }

    private static string Describe(Type type, bool nullable)
    {
        var what = (Nullable.GetUnderlyingType(type) ?? type) switch
        {
            var t when t == typeof(int) => "an integer",
            var t when t == typeof(double) => "a number",
            var t when t == typeof(bool) => "true or false",
            _ => "a string",
        };
        return nullable ? what + " or null" : what;
    }
}
