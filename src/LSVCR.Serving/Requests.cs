namespace LSVCR.Serving;

/// <summary>"Which videos next": histories in external ids, k, exclusions.</summary>
public sealed record VideoQuery(IReadOnlyList<string> Videos, IReadOnlyList<CommentEntry> Entries, int K, IReadOnlyList<string> Exclude, bool ExcludeSeen);

/// <summary>"Which comments first" under the watched video; null candidates = all of its comments.</summary>
public sealed record CommentQuery(IReadOnlyList<string> Videos, IReadOnlyList<CommentEntry> Entries, string Video, IReadOnlyList<string>? Candidates, int K);

public sealed record ScoredItem(string Id, float Score);

/// <summary>A ranking and the model that produced it; <see cref="Fallback"/> is "popularity" when the user had no usable history.</summary>
public sealed record Recommendation(string ModelVersion, IReadOnlyList<ScoredItem> Items, string? Fallback,
    IReadOnlyList<string> UnknownVideos, IReadOnlyList<string> UnknownComments);

/// <summary>A request the model cannot answer because of its content (an unknown watched video or candidate): a 400 naming <see cref="Field"/>.</summary>
public sealed class InvalidQueryException(string field, string message) : Exception(message)
{
    public string Field { get; } = field;
}

/// <summary>The endpoint's queue is full: answer 429 at once.</summary>
public sealed class OverloadedException(string endpoint) : Exception($"the {endpoint} queue is full");

/// <summary>No model is loaded yet.</summary>
public sealed class NoModelException() : Exception("no model is loaded yet");
