using System.Text.Json;
using System.Text.Json.Serialization;
using LSVCR.Serving;
using Microsoft.AspNetCore.Http.HttpResults;

namespace LSVCR.Serving.Api;

/// <summary>
/// Reads and validates request bodies itself (instead of minimal-API binding) so every bad input becomes a problem
/// details body naming the field: malformed JSON and wrong types (from the parser's path), unknown fields, k out of
/// range, too many ids, and bodies over <see cref="ServingOptions.MaxBodyBytes"/> (413, also when no Content-Length is sent).
/// </summary>
internal static class RequestReader
{
    public const int MaxK = 1000;

    public static readonly JsonSerializerOptions Json = new()
    {
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        Converters = { new IdConverter() },
        AllowTrailingCommas = false,
        ReadCommentHandling = JsonCommentHandling.Disallow,
    };

    public sealed record Outcome<T>(T? Value, IResult? Error);

    public static async Task<Outcome<T>> ReadAsync<T>(HttpRequest request, ServingOptions options, CancellationToken ct) where T : class
    {
        if (request.ContentLength > options.MaxBodyBytes) return new(null, TooLarge(options));
        var buffer = new MemoryStream();
        var chunk = new byte[16 * 1024];
        int n;
        try
        {
            while ((n = await request.Body.ReadAsync(chunk, ct)) > 0)
            {
                if (buffer.Length + n > options.MaxBodyBytes) return new(null, TooLarge(options));
                buffer.Write(chunk, 0, n);
            }
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            return new(null, TooLarge(options));
        }
        if (buffer.Length == 0) return new(null, Invalid("body", "the request body is empty; send a JSON object"));
        try
        {
            var value = JsonSerializer.Deserialize<T>(buffer.GetBuffer().AsSpan(0, (int)buffer.Length), Json);
            return value is null ? new(null, Invalid("body", "the request body is JSON null; send a JSON object")) : new(value, null);
        }
        catch (JsonException e)
        {
            var field = string.IsNullOrEmpty(e.Path) || e.Path == "$" ? "body" : e.Path.StartsWith("$.") ? e.Path[2..] : e.Path;
            var where = e.LineNumber is { } line ? $" (line {line + 1}, byte {e.BytePositionInLine + 1})" : "";
            var why = e.Message.Split(" Path:")[0];
            return new(null, Invalid(field, $"{why}{where}"));
        }
    }

    public static ValidationProblem Invalid(string field, string message) =>
        TypedResults.ValidationProblem(new Dictionary<string, string[]> { [field] = [message] },
            detail: $"{field}: {message}", title: "The request is invalid.");

    private static ProblemHttpResult TooLarge(ServingOptions options) =>
        TypedResults.Problem(statusCode: StatusCodes.Status413PayloadTooLarge, title: "The request body is too large.",
            detail: $"body: larger than {options.MaxBodyBytes} bytes", extensions: new Dictionary<string, object?> { ["field"] = "body" });

    // ---- validation into engine queries ---------------------------------------------------------------------------

    public static (VideoQuery? Query, IResult? Error) Validate(VideoRecommendationRequest r, ServingOptions options)
    {
        if (r.K is < 1 or > MaxK) return (null, Invalid("k", $"must be between 1 and {MaxK}, got {r.K}"));
        if (Ids(r.VideoHistory, "video_history") is { } e1) return (null, e1);
        if (Ids(r.Exclude, "exclude") is { } e2) return (null, e2);
        if (Entries(r.CommentHistory) is { } e3) return (null, e3);
        if (TooMany(options, ("video_history", Count(r.VideoHistory)), ("comment_history", CountEntries(r.CommentHistory)), ("exclude", Count(r.Exclude))) is { } e4)
            return (null, e4);
        return (new VideoQuery(Strings(r.VideoHistory), ToEntries(r.CommentHistory), r.K, Strings(r.Exclude), r.ExcludeSeen), null);
    }

    public static (CommentQuery? Query, IResult? Error) Validate(CommentRankingRequest r, ServingOptions options)
    {
        if (r.K is < 1 or > MaxK) return (null, Invalid("k", $"must be between 1 and {MaxK}, got {r.K}"));
        if (string.IsNullOrEmpty(r.Video)) return (null, Invalid("video", "the watched video is required"));
        if (Ids(r.VideoHistory, "video_history") is { } e1) return (null, e1);
        if (Ids(r.Candidates, "candidates") is { } e2) return (null, e2);
        if (r.Candidates is { Count: 0 }) return (null, Invalid("candidates", "must hold at least one comment, or be left out to rank all of the video's comments"));
        if (Entries(r.CommentHistory) is { } e3) return (null, e3);
        if (TooMany(options, ("video_history", Count(r.VideoHistory)), ("comment_history", CountEntries(r.CommentHistory)), ("candidates", Count(r.Candidates))) is { } e4)
            return (null, e4);
        return (new CommentQuery(Strings(r.VideoHistory), ToEntries(r.CommentHistory), r.Video, r.Candidates is null ? null : Strings(r.Candidates), r.K), null);
    }

    private static int Count<T>(List<T>? l) => l?.Count ?? 0;
    private static int CountEntries(List<CommentHistoryEntry?>? l) => l?.Sum(e => 1 + (e?.Comments?.Count ?? 0)) ?? 0;

    private static IResult? TooMany(ServingOptions options, params (string Field, int Count)[] counts)
    {
        var total = counts.Sum(c => c.Count);
        if (total <= options.MaxIds) return null;
        var worst = counts.MaxBy(c => c.Count);
        return Invalid(worst.Field, $"the request carries {total} ids ({worst.Count} in {worst.Field}); at most {options.MaxIds} are accepted");
    }

    private static IResult? Ids(List<string?>? ids, string field)
    {
        if (ids is null) return null;
        for (int i = 0; i < ids.Count; i++)
            if (string.IsNullOrEmpty(ids[i])) return Invalid($"{field}[{i}]", "an id must be a non-empty string or a number");
        return null;
    }

    private static IResult? Entries(List<CommentHistoryEntry?>? entries)
    {
        if (entries is null) return null;
        for (int i = 0; i < entries.Count; i++)
        {
            var e = entries[i];
            if (e is null) return Invalid($"comment_history[{i}]", "an entry must be an object {video, comments}");
            if (string.IsNullOrEmpty(e.Video)) return Invalid($"comment_history[{i}].video", "the entry's video is required");
            if (Ids(e.Comments, $"comment_history[{i}].comments") is { } error) return error;
        }
        return null;
    }

    private static IReadOnlyList<string> Strings(List<string?>? ids) => ids is null ? [] : ids.ConvertAll(i => i!);

    private static IReadOnlyList<CommentEntry> ToEntries(List<CommentHistoryEntry?>? entries) =>
        entries is null ? [] : entries.ConvertAll(e => new CommentEntry(e!.Video!, Strings(e.Comments)));
}
