using LSVCR.Data;

namespace LSVCR.Alignment;

/// <summary>A tokenised prompt: the sequence ids, where the prompt ends (the user vector is read there) and the response mask.</summary>
public sealed record Prompt(int[] Ids, int LastPromptToken, bool[] Response);

/// <summary>
/// Writes the stage-1 prompt of an example (MODEL.md §3) and tokenises it within the backbone's limit: the video history
/// (title + the popular comment shown), the comment history (title + the interacted comments), in the example's order,
/// then the task. Decoders append the response (target title or positive comment) for the lm loss; encoders read the
/// prompt only — appending the answer would let a bidirectional encoder see it. Entries that do not fit are dropped
/// oldest first from the longer history, so the task line and the most recent behaviour always stay.
/// </summary>
public sealed class PromptBuilder(Catalog catalog, BackboneTokenizer tokenizer, int maxTokens, bool withResponse)
{
    private readonly Dictionary<string, int[]> _cache = [];

    public int[] Tokens(string text)
    {
        lock (_cache)
        {
            if (!_cache.TryGetValue(text, out var ids)) _cache[text] = ids = tokenizer.Encode(text);
            return ids;
        }
    }

    public static string VideoLine(Catalog c, VideoEntry v) =>
        v.Comment == 0 ? $"\"{c.PhotoTitles[v.Photo]}\"; " : $"\"{c.PhotoTitles[v.Photo]}\" (top comment: {c.CommentTexts[v.Comment]}); ";

    public static string CommentLine(Catalog c, CommentEntry e) =>
        $"under \"{c.PhotoTitles[e.Photo]}\": {string.Join(" | ", e.Comments.Select(x => c.CommentTexts[x]))}; ";

    public static string Task(Catalog c, Stage1Example ex) => ex.Task == TaskKind.Rec
        ? "Task: recommend the next video this user will like. Answer:"
        : $"Task: the user is now watching \"{c.PhotoTitles[ex.TargetPhoto]}\"; write a comment this user would interact with. Answer:";

    public string ResponseText(Stage1Example ex) =>
        ex.Task == TaskKind.Rec ? " " + catalog.PhotoTitles[ex.TargetPhoto] : " " + catalog.CommentTexts[ex.ResponseComment];

    public Prompt Build(Stage1Example ex)
    {
        var videos = ex.Videos.Select(v => Tokens(VideoLine(catalog, v))).ToList();
        var comments = ex.Comments.Select(e => Tokens(CommentLine(catalog, e))).ToList();
        var videoHead = Tokens("Videos the user liked, oldest first: ");
        var commentHead = Tokens("Comments the user interacted with, oldest first: ");
        var task = Tokens(Task(catalog, ex));
        var response = withResponse ? Tokens(ResponseText(ex)) : [];
        int budget = maxTokens - tokenizer.Prefix.Count - tokenizer.Suffix.Count - response.Length;
        // A very long response (a pasted essay) keeps at least the task line in view.
        if (budget < task.Length + videoHead.Length + commentHead.Length)
        {
            response = response[..Math.Max(0, Math.Min(response.Length, maxTokens - tokenizer.Prefix.Count - tokenizer.Suffix.Count - task.Length - videoHead.Length - commentHead.Length))];
            budget = maxTokens - tokenizer.Prefix.Count - tokenizer.Suffix.Count - response.Length;
        }
        int used = videoHead.Length + commentHead.Length + task.Length + videos.Sum(v => v.Length) + comments.Sum(c => c.Length);
        int vStart = 0, cStart = 0;
        while (used > budget && (vStart < videos.Count || cStart < comments.Count))
        {
            int vLeft = videos.Skip(vStart).Sum(v => v.Length), cLeft = comments.Skip(cStart).Sum(c => c.Length);
            if (vLeft >= cLeft && vStart < videos.Count) used -= videos[vStart++].Length;
            else if (cStart < comments.Count) used -= comments[cStart++].Length;
            else used -= videos[vStart++].Length;
        }
        var ids = new List<int>(maxTokens);
        ids.AddRange(tokenizer.Prefix);
        void AddVideos() { ids.AddRange(videoHead); foreach (var v in videos.Skip(vStart)) ids.AddRange(v); }
        void AddComments() { ids.AddRange(commentHead); foreach (var c in comments.Skip(cStart)) ids.AddRange(c); }
        if (ex.VideoHistoryFirst) { AddVideos(); AddComments(); }
        else { AddComments(); AddVideos(); }
        ids.AddRange(task);
        if (ids.Count > maxTokens - tokenizer.Suffix.Count - response.Length)
            ids.RemoveRange(maxTokens - tokenizer.Suffix.Count - response.Length, ids.Count - (maxTokens - tokenizer.Suffix.Count - response.Length));
        ids.AddRange(tokenizer.Suffix);
        int last = ids.Count - 1;
        var isResponse = new bool[ids.Count + response.Length];
        for (int i = ids.Count; i < isResponse.Length; i++) isResponse[i] = true;
        ids.AddRange(response);
        return new Prompt(ids.ToArray(), last, isResponse);
    }
}
