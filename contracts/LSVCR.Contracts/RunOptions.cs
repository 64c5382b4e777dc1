using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace LSVCR.Contracts;

/// <summary>
/// The options of one pipeline run, as the Runs API accepts them and every step receives them. Null members keep the
/// library defaults (those of <c>lsvcr pipeline</c>), so a message stays small and defaults live in one place.
/// </summary>
public sealed record PipelineRunOptions
{
    /// <summary>Text encoder of the embeddings step (<c>minilm</c> or <c>hash</c>, the tiny test encoder).</summary>
    public string Encoder { get; init; } = "minilm";
    /// <summary>Texts per Embeddings chunk message: the unit competing Embeddings instances share.</summary>
    public int EmbeddingChunkSize { get; init; } = 4096;
    public IReadOnlyList<TaskKind> Tasks { get; init; } = [TaskKind.Rec, TaskKind.CommRank];
    public FineTuneSettings FineTune { get; init; } = new();
    public QualityGate Gate { get; init; } = new();
    /// <summary>Run the optional stage-1 alignment step between embeddings and fine-tuning.</summary>
    public bool Align { get; init; }
}

/// <summary>
/// Stage-2 settings of a run (MODEL.md §4). Besides <see cref="Variant"/>, every member is a key of the training settings
/// (<see cref="TrainOptions"/>: the keys of <c>lsvcr train --config run.json</c>, e.g. <c>{"epochs": 1, "dropout": 0.1,
/// "weight-decay": 0.01}</c>), so a run started over HTTP and one started from the CLI with the same keys mean the same
/// thing. Keys left out keep the FineTuning host's defaults (its <c>Jobs:FineTuning:Training</c> section, which is where
/// threads and shards belong). The keys are checked when the run is submitted (<see cref="Resolve"/>).
/// </summary>
[JsonConverter(typeof(FineTuneSettingsConverter))]
public sealed record FineTuneSettings
{
    /// <summary>Variant of the SR model trained for publication (default <c>full</c>).</summary>
    public string Variant { get; init; } = "full";

    /// <summary>The training-settings keys this run sets, as given (kebab-case, as in a settings file); in JSON they sit
    /// beside <c>variant</c>.</summary>
    public JsonObject Training { get; init; } = [];

    /// <summary>Keys a run may not set: the initial weights come from the run's own alignment step.</summary>
    public static IReadOnlyList<string> ReservedKeys { get; } = ["init"];

    /// <summary><paramref name="defaults"/> with this run's keys applied and validated; a bad key, value or combination
    /// throws a bad-input <see cref="LsvcrException"/> naming it (under <paramref name="source"/>).</summary>
    public TrainOptions Resolve(TrainOptions defaults, string source = "options.fineTune")
    {
        var (resolved, problems) = TryResolve(defaults, source);
        if (problems.Count > 0) throw new LsvcrException($"{source}: {string.Join("; ", problems)}");
        return resolved!;
    }

    /// <summary>Every problem of these keys over <paramref name="defaults"/>, one message each (empty = valid).</summary>
    public IReadOnlyList<string> Problems(TrainOptions defaults, string source = "options.fineTune") => TryResolve(defaults, source).Problems;

    private (TrainOptions? Resolved, IReadOnlyList<string> Problems) TryResolve(TrainOptions defaults, string source)
    {
        var reserved = Training.Select(p => p.Key).Where(ReservedKeys.Contains)
            .Select(k => $"\"{k}\" is set by the run itself (the stage-1 alignment output), not by its options").ToList();
        if (reserved.Count > 0) return (null, reserved);
        TrainOptions resolved;
        try { resolved = defaults.With(Training, source); }
        catch (LsvcrException e) { return (null, [e.Message]); } // an unknown key or a value of the wrong type
        return (resolved, resolved.Validate());
    }
}

/// <summary>
/// When a run's model is published: it must beat the popularity baseline on both tasks by <see cref="MinLift"/>
/// (ndcg@10 ratio) unless <see cref="Enabled"/> is false (e.g. for tiny test data, where nothing is learnt).
/// </summary>
public sealed record QualityGate(bool Enabled = true, double MinLift = 1.0, string Metric = "ndcg@10");

/// <summary>
/// Reads and writes <see cref="FineTuneSettings"/> as one flat object (<c>variant</c> beside the settings keys). Written
/// by hand rather than with <c>[JsonExtensionData]</c>: MassTransit's serializer options carry their own dictionary
/// converter, which writes extension data as a nested object without a name (invalid JSON) on the bus.
/// </summary>
public sealed class FineTuneSettingsConverter : JsonConverter<FineTuneSettings>
{
    public override FineTuneSettings Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (JsonNode.Parse(ref reader) is not JsonObject obj)
            throw new JsonException("fineTune must be an object of training settings, like {\"epochs\": 1, \"dropout\": 0.1}");
        var variant = "full";
        var training = new JsonObject();
        foreach (var (key, value) in obj.ToList())
        {
            if (string.Equals(key, "variant", StringComparison.OrdinalIgnoreCase))
                variant = value is JsonValue v && v.TryGetValue<string>(out var name) ? name : throw new JsonException("fineTune.variant must be a string");
            else training[key] = value?.DeepClone();
        }
        return new FineTuneSettings { Variant = variant, Training = training };
    }

    public override void Write(Utf8JsonWriter writer, FineTuneSettings value, JsonSerializerOptions options)
    {
        writer.WriteStartObject();
        writer.WriteString("variant", value.Variant);
        foreach (var (key, node) in value.Training)
        {
            writer.WritePropertyName(key);
            if (node is null) writer.WriteNullValue();
            else node.WriteTo(writer);
        }
        writer.WriteEndObject();
    }
}
