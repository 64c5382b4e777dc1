using System.Text.Json;
using System.Text.Json.Serialization;

namespace LSVCR.Alignment.Decoder;

/// <summary>
/// The config.json fields of a Llama/Qwen2-style causal LM (Hugging Face names). Qwen2 puts biases on q/k/v only;
/// Llama has <c>attention_bias</c> (false in released models) for q/k/v/o.
/// </summary>
public sealed record DecoderConfig
{
    [JsonPropertyName("model_type")] public string ModelType { get; init; } = "llama";
    [JsonPropertyName("vocab_size")] public int VocabSize { get; init; }
    [JsonPropertyName("hidden_size")] public int Hidden { get; init; }
    [JsonPropertyName("intermediate_size")] public int Intermediate { get; init; }
    [JsonPropertyName("num_hidden_layers")] public int Layers { get; init; }
    [JsonPropertyName("num_attention_heads")] public int Heads { get; init; }
    [JsonPropertyName("num_key_value_heads")] public int? KeyValueHeads { get; init; }
    [JsonPropertyName("head_dim")] public int? HeadDimOverride { get; init; }
    [JsonPropertyName("rms_norm_eps")] public double RmsNormEps { get; init; } = 1e-6;
    [JsonPropertyName("rope_theta")] public double RopeTheta { get; init; } = 10000;
    [JsonPropertyName("max_position_embeddings")] public int MaxPositions { get; init; } = 2048;
    [JsonPropertyName("tie_word_embeddings")] public bool TieWordEmbeddings { get; init; }
    [JsonPropertyName("attention_bias")] public bool? AttentionBias { get; init; }
    [JsonPropertyName("hidden_act")] public string HiddenAct { get; init; } = "silu";
    [JsonPropertyName("bos_token_id")] public JsonElement? BosTokenId { get; init; }
    [JsonPropertyName("eos_token_id")] public JsonElement? EosTokenId { get; init; }
    [JsonPropertyName("rope_scaling")] public JsonElement? RopeScaling { get; init; }

    [JsonIgnore] public int KvHeads => KeyValueHeads ?? Heads;
    [JsonIgnore] public int HeadDim => HeadDimOverride ?? Hidden / Math.Max(Heads, 1);
    /// <summary>Qwen2 always has q/k/v biases; Llama only with attention_bias.</summary>
    [JsonIgnore] public bool QkvBias => ModelType == "qwen2" || AttentionBias == true;
    [JsonIgnore] public bool OutputBias => ModelType != "qwen2" && AttentionBias == true;
    [JsonIgnore] public int? Bos => FirstId(BosTokenId);

    public static readonly string[] SupportedTypes = ["llama", "qwen2", "mistral"];

    /// <summary>Reads and checks a config.json; errors name the file and field.</summary>
    public static DecoderConfig Read(string file)
    {
        DecoderConfig? c;
        try { c = JsonSerializer.Deserialize<DecoderConfig>(File.ReadAllText(file)); }
        catch (JsonException e) { throw new LsvcrException($"{file}: invalid config.json ({e.Message})", e); }
        if (c is null) throw new LsvcrException($"{file}: empty config.json");
        c.Validate(file);
        return c;
    }

    public void Validate(string source)
    {
        if (!SupportedTypes.Contains(ModelType))
            throw new LsvcrException($"{source}: model_type '{ModelType}' is not supported (supported: {string.Join(", ", SupportedTypes)}: RMSNorm, rotary, grouped-query attention, SwiGLU)");
        void Positive(int v, string field) { if (v < 1) throw new LsvcrException($"{source}: {field} must be positive (got {v})"); }
        Positive(VocabSize, "vocab_size");
        Positive(Hidden, "hidden_size");
        Positive(Intermediate, "intermediate_size");
        Positive(Layers, "num_hidden_layers");
        Positive(Heads, "num_attention_heads");
        Positive(KvHeads, "num_key_value_heads");
        if (Heads % KvHeads != 0) throw new LsvcrException($"{source}: num_attention_heads ({Heads}) must be a multiple of num_key_value_heads ({KvHeads})");
        if (HeadDim % 2 != 0) throw new LsvcrException($"{source}: head dimension {HeadDim} must be even for rotary positions");
        if (HiddenAct != "silu") throw new LsvcrException($"{source}: hidden_act '{HiddenAct}' is not supported (SwiGLU needs silu)");
        if (RopeScaling is { ValueKind: not JsonValueKind.Null })
            throw new LsvcrException($"{source}: rope_scaling is not supported (plain rotary positions only)");
    }

    private static int? FirstId(JsonElement? e) => e switch
    {
        { ValueKind: JsonValueKind.Number } n => n.GetInt32(),
        { ValueKind: JsonValueKind.Array } a when a.GetArrayLength() > 0 => a[0].GetInt32(),
        _ => null,
    };
}
