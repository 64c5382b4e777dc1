namespace LSVCR.Data;

/// <summary>
/// The item side of a dataset: videos ("photos") and comments with their texts, as dense internal ids.
/// Id 0 of each kind is the pad entry (MODEL.md §1.1), so arrays are indexed directly by internal id.
/// A video's comments are stored CSR-style in popularity order, which keeps a million-comment catalogue
/// in a few flat arrays instead of millions of small lists.
/// </summary>
public sealed class Catalog
{
    public const string PadId = "[PAD]";

    public Catalog(
        string[] photoIds,
        string[] photoTitles,
        int[] photoCommentOffsets,
        int[] photoComments,
        string[] commentIds,
        string[] commentTexts)
    {
        if (photoIds.Length == 0 || commentIds.Length == 0)
            throw new ArgumentException("id lists must hold at least the pad entry at index 0");
        if (photoTitles.Length != photoIds.Length)
            throw new ArgumentException($"{photoTitles.Length} titles for {photoIds.Length} videos");
        if (commentTexts.Length != commentIds.Length)
            throw new ArgumentException($"{commentTexts.Length} comment texts for {commentIds.Length} comments");
        if (photoCommentOffsets.Length != photoIds.Length + 1 || photoCommentOffsets[^1] != photoComments.Length)
            throw new ArgumentException("comment-list offsets do not match the video count / comment array");
        PhotoIds = photoIds;
        PhotoTitles = photoTitles;
        PhotoCommentOffsets = photoCommentOffsets;
        PhotoComments = photoComments;
        CommentIds = commentIds;
        CommentTexts = commentTexts;
        PhotoIndex = BuildIndex(photoIds);
        CommentIndex = BuildIndex(commentIds);
        CommentPhoto = new int[commentIds.Length];
        for (int p = 1; p < photoIds.Length; p++)
            foreach (int c in CommentsOf(p))
                if (CommentPhoto[c] == 0) CommentPhoto[c] = p;
    }

    /// <summary>External video ids by internal id; index 0 is <see cref="PadId"/>.</summary>
    public string[] PhotoIds { get; }
    public string[] PhotoTitles { get; }
    /// <summary>CSR offsets into <see cref="PhotoComments"/>: video p's comments are [offsets[p], offsets[p+1]).</summary>
    public int[] PhotoCommentOffsets { get; }
    /// <summary>Internal comment ids, per video in popularity order (most popular first).</summary>
    public int[] PhotoComments { get; }
    public string[] CommentIds { get; }
    public string[] CommentTexts { get; }
    /// <summary>The video whose comment list holds each comment (0 when none does).</summary>
    public int[] CommentPhoto { get; }
    public IReadOnlyDictionary<string, int> PhotoIndex { get; }
    public IReadOnlyDictionary<string, int> CommentIndex { get; }

    /// <summary>Number of videos including the pad row.</summary>
    public int PhotoCount => PhotoIds.Length;
    /// <summary>Number of comments including the pad row.</summary>
    public int CommentCount => CommentIds.Length;

    public ReadOnlySpan<int> CommentsOf(int photo) =>
        PhotoComments.AsSpan(PhotoCommentOffsets[photo], PhotoCommentOffsets[photo + 1] - PhotoCommentOffsets[photo]);

    private static Dictionary<string, int> BuildIndex(string[] ids)
    {
        var index = new Dictionary<string, int>(ids.Length, StringComparer.Ordinal);
        for (int i = 0; i < ids.Length; i++)
            if (!index.TryAdd(ids[i], i))
                throw new ArgumentException($"duplicate id '{ids[i]}' at index {i} (first at {index[ids[i]]})");
        return index;
    }
}
