using System.Text.Json;
using System.Text.Json.Serialization;

namespace LSVCR.Serving.Api;

/// <summary>One comment-history entry: the video and the comments the user interacted with under it, oldest first.</summary>
public sealed record CommentHistoryEntry
{
    [JsonPropertyName("video")] public string? Video { get; init; }
    [JsonPropertyName("comments")] public List<string?>? Comments { get; init; }
}

/// <summary>POST /v1/recommendations/videos.</summary>
public sealed record VideoRecommendationRequest
{
    /// <summary>Liked videos, oldest first (external ids).</summary>
    [JsonPropertyName("video_history")] public List<string?>? VideoHistory { get; init; }
    [JsonPropertyName("comment_history")] public List<CommentHistoryEntry?>? CommentHistory { get; init; }
    /// <summary>How many videos, 1…1000 (default 10).</summary>
    [JsonPropertyName("k")] public int K { get; init; } = 10;
    [JsonPropertyName("exclude")] public List<string?>? Exclude { get; init; }
    /// <summary>Leave out the videos of the history (default true).</summary>
    [JsonPropertyName("exclude_seen")] public bool ExcludeSeen { get; init; } = true;
}

/// <summary>POST /v1/recommendations/comments.</summary>
public sealed record CommentRankingRequest
{
    [JsonPropertyName("video_history")] public List<string?>? VideoHistory { get; init; }
    [JsonPropertyName("comment_history")] public List<CommentHistoryEntry?>? CommentHistory { get; init; }
    /// <summary>The video being watched (required).</summary>
    [JsonPropertyName("video")] public string? Video { get; init; }
    /// <summary>Comments to rank; default all of the video's comments.</summary>
    [JsonPropertyName("candidates")] public List<string?>? Candidates { get; init; }
    /// <summary>How many comments, 1…1000 (default 20).</summary>
    [JsonPropertyName("k")] public int K { get; init; } = 20;
}

public sealed record ScoredVideo([property: JsonPropertyName("video")] string Video, [property: JsonPropertyName("score")] float Score);
public sealed record ScoredComment([property: JsonPropertyName("comment")] string Comment, [property: JsonPropertyName("score")] float Score);

public sealed record VideoRecommendationResponse(
    [property: JsonPropertyName("model_version")] string ModelVersion,
    [property: JsonPropertyName("items")] IReadOnlyList<ScoredVideo> Items,
    [property: JsonPropertyName("fallback"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Fallback,
    [property: JsonPropertyName("unknown_videos")] IReadOnlyList<string> UnknownVideos,
    [property: JsonPropertyName("unknown_comments")] IReadOnlyList<string> UnknownComments);

public sealed record CommentRankingResponse(
    [property: JsonPropertyName("model_version")] string ModelVersion,
    [property: JsonPropertyName("items")] IReadOnlyList<ScoredComment> Items,
    [property: JsonPropertyName("fallback"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Fallback,
    [property: JsonPropertyName("unknown_videos")] IReadOnlyList<string> UnknownVideos,
    [property: JsonPropertyName("unknown_comments")] IReadOnlyList<string> UnknownComments);

public sealed record ModelResponse(
    [property: JsonPropertyName("model_version")] string ModelVersion,
    [property: JsonPropertyName("loaded_at")] DateTimeOffset LoadedAt,
    [property: JsonPropertyName("load_seconds")] double LoadSeconds,
    [property: JsonPropertyName("videos")] int Videos,
    [property: JsonPropertyName("comments")] int Comments,
    [property: JsonPropertyName("training_run")] string TrainingRun,
    [property: JsonPropertyName("pinned")] string? Pinned,
    [property: JsonPropertyName("history")] IReadOnlyList<string> History,
    [property: JsonPropertyName("last_error")] string? LastError);

public sealed record PinRequest
{
    [JsonPropertyName("version")] public string? Version { get; init; }
}

/// <summary>Ids are matched by their string form (MODEL.md §1.1): a JSON number where an id is expected is read as its digits.</summary>
internal sealed class IdConverter : JsonConverter<string>
{
    public override string? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) => reader.TokenType switch
    {
        JsonTokenType.String => reader.GetString(),
        JsonTokenType.Number => System.Text.Encoding.UTF8.GetString(reader.HasValueSequence ? System.Buffers.BuffersExtensions.ToArray(reader.ValueSequence) : reader.ValueSpan),
        JsonTokenType.Null => null,
        _ => throw new JsonException($"expected an id (string or number), got {reader.TokenType}"),
    };

    public override void Write(Utf8JsonWriter writer, string value, JsonSerializerOptions options) => writer.WriteStringValue(value);
}
