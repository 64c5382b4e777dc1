using LSVCR.Data;
using LSVCR.Modeling;

namespace LSVCR.Training;

/// <summary>
/// The compared systems. Everything that differs between them is decided here, so training, evaluation and the report
/// agree on what a variant name means.
/// </summary>
public static class Variants
{
    public const string Full = "full", IdOnly = "id-only", TextOnly = "text-only", NoComments = "no-comments", Popularity = "popularity";
    /// <summary>A report row only (the pipeline with stage 1): the full model trained without alignment. Not a trainable variant name.</summary>
    public const string NoAlignment = "no-alignment";

    public static readonly IReadOnlyList<string> All = [Full, IdOnly, TextOnly, NoComments, Popularity];

    public static void Check(string variant)
    {
        if (!All.Contains(variant))
            throw new LsvcrException($"unknown variant '{variant}' (expected one of {string.Join(", ", All)})");
    }

    /// <summary>A variant name as a user typed it (any case, surrounding spaces) → its canonical name; the library
    /// itself only takes canonical names (<see cref="Check"/>), so run folders and report rows have one spelling.</summary>
    public static string Parse(string name)
    {
        var trimmed = name.Trim();
        return All.FirstOrDefault(v => string.Equals(v, trimmed, StringComparison.OrdinalIgnoreCase))
            ?? throw new LsvcrException($"unknown variant '{trimmed}' (expected one of {string.Join(", ", All)})");
    }

    /// <summary>Comma- or space-separated lists (<c>"Full,popularity"</c>, or several values) → distinct canonical names.</summary>
    public static IReadOnlyList<string> ParseList(IEnumerable<string> values)
    {
        var names = values.SelectMany(v => v.Split([',', ' '], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            .Select(Parse).Distinct().ToList();
        return names.Count > 0 ? names : throw new LsvcrException($"no variant given (expected one or more of {string.Join(", ", All)})");
    }

    public static bool IsTrained(string variant) => variant != Popularity;

    /// <summary>no-comments keeps the full model but empties every comment history at batching time.</summary>
    public static bool DropsComments(string variant) => variant == NoComments;

    /// <summary>The model configuration of a trained variant; <paramref name="baseConfig"/> carries non-default hyper-parameters.</summary>
    public static RecComConfig ModelConfig(string variant, TaskKind task, int photoCount, int commentCount, int textDim, RecComConfig? baseConfig = null)
    {
        var c = (baseConfig ?? new RecComConfig { PhotoCount = photoCount, CommentCount = commentCount }) with
        {
            PhotoCount = photoCount, CommentCount = commentCount, TextDim = textDim,
            UseIds = true, UseText = true, CommentIds = false,
        };
        return variant switch
        {
            Full or NoComments => c,
            IdOnly => c with { UseText = false, CommentIds = task == TaskKind.CommRank },
            TextOnly => c with { UseIds = false },
            _ => throw new LsvcrException($"variant '{variant}' has no model"),
        };
    }

    /// <summary>One line per variant and task for the report.</summary>
    public static string Describe(string variant, TaskKind task) => (variant, task) switch
    {
        (NoAlignment, _) => "The full model without stage 1: stage 2 from fresh weights on the plain text embeddings (the pipeline's full row is then the aligned one).",
        (Full, _) => "LSVCR stage 2: video id embeddings (gate·id) plus item text embeddings through llm_adapter; both histories.",
        (IdOnly, TaskKind.Rec) => "No item texts (UseText=false): videos are learned id embeddings only (SASRec-style with the two-history encoder).",
        (IdOnly, _) => "No item texts (UseText=false): videos and comments are learned id embeddings (CommentIds=true); candidates are scored by comment-id embedding.",
        (TextOnly, _) => "No id embeddings (UseIds=false): items are represented by their text embeddings only (the stage-1 form of the SR model).",
        (NoComments, _) => "Full model, but every comment history is emptied at batching time (training and evaluation).",
        (Popularity, TaskKind.Rec) => "No model: videos ranked by how often they are the target of a Rec training example.",
        (Popularity, _) => "No model: the watched video's comments ranked in the catalogue's popularity order (comment_list order).",
        _ => variant,
    };
}
