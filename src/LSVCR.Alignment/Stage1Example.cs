using LSVCR.Data;

namespace LSVCR.Alignment;

/// <summary>A video-history entry: the video and the popular comment shown with it (0 = none).</summary>
public readonly record struct VideoEntry(int Photo, int Comment);

/// <summary>A comment-history entry: the video and the comments the user interacted with under it.</summary>
public sealed record CommentEntry(int Photo, int[] Comments);

/// <summary>
/// One stage-1 example after sampling: histories (most recent ≤ <see cref="Stage1Sampler.MaxHistory"/>), the task,
/// the target video (Rec: the next video; CommRank: the watched one), the response comment (CommRank) and the prompt order.
/// </summary>
public sealed record Stage1Example(TaskKind Task, VideoEntry[] Videos, CommentEntry[] Comments, int TargetPhoto,
    int ResponseComment, bool VideoHistoryFirst);

/// <summary>
/// Draws stage-1 examples from the train splits of both tasks (MODEL.md §3): the popular comment shown with a history
/// video is uniformly one of its first 3; the CommRank response is one of the positives; the prompt order is a coin
/// flip; augmentation replaces, with p = <see cref="AugmentHistory"/> per history, each entry with
/// p = <see cref="AugmentEntry"/> by a variant (another popular comment of the video; interacted comments mixed with
/// other popular comments of the video). Every draw comes from the generator passed in, so a batch is a function of
/// (seed, batch index) and a resumed run sees the same batches.
/// </summary>
public sealed class Stage1Sampler(LsvcrDataset data)
{
    public int MaxHistory { get; init; } = 20;
    /// <summary>Interacted comments kept per comment-history entry (prompt and SR mean); each is an LLM encoding.</summary>
    public int MaxEntryComments { get; init; } = 3;
    public double AugmentHistory { get; init; } = 0.5;
    public double AugmentEntry { get; init; } = 0.3;

    private const int PopularShown = 3;
    private const int PopularPool = 10;
    private readonly Catalog _catalog = data.Catalog;

    /// <summary>All train examples of both tasks as (task, index), the order every run shuffles from.</summary>
    public IReadOnlyList<(TaskKind Task, int Index)> Pool()
    {
        var pool = new List<(TaskKind, int)>();
        foreach (var task in new[] { TaskKind.Rec, TaskKind.CommRank })
        {
            var set = data[task, Split.Train];
            for (int i = 0; i < set.Count; i++)
                if (task == TaskKind.Rec || set.PositivesOf(i).Length > 0) pool.Add((task, i));
        }
        if (pool.Count == 0) throw new LsvcrException("the dataset has no train examples for stage 1 (rec.train / comm_rank.train are empty)");
        return pool;
    }

    public Stage1Example Draw(TaskKind task, int index, Random rng)
    {
        var set = data[task, Split.Train];
        var photos = set.PhotoHistoryOf(index);
        var videos = new List<VideoEntry>();
        for (int j = Math.Max(0, photos.Length - MaxHistory); j < photos.Length; j++)
            videos.Add(new VideoEntry(photos[j], ShownComment(photos[j], rng)));
        var (start, end) = set.CommentEntriesOf(index);
        var comments = new List<CommentEntry>();
        for (int e = Math.Max(start, end - MaxHistory); e < end; e++)
        {
            var all = set.CommentsOfEntry(e);
            comments.Add(new CommentEntry(set.CommentHistoryPhoto[e], all[Math.Max(0, all.Length - MaxEntryComments)..].ToArray()));
        }
        if (rng.NextDouble() < AugmentHistory)
            for (int j = 0; j < videos.Count; j++)
                if (rng.NextDouble() < AugmentEntry) videos[j] = videos[j] with { Comment = OtherPopular(videos[j].Photo, videos[j].Comment, rng) };
        if (rng.NextDouble() < AugmentHistory)
            for (int j = 0; j < comments.Count; j++)
                if (rng.NextDouble() < AugmentEntry) comments[j] = Mixed(comments[j], rng);
        int response = 0;
        if (task == TaskKind.CommRank)
        {
            var positives = set.PositivesOf(index);
            response = positives[rng.Next(positives.Length)];
        }
        return new Stage1Example(task, videos.ToArray(), comments.ToArray(), set.TargetPhoto[index], response, rng.Next(2) == 0);
    }

    private int ShownComment(int photo, Random rng)
    {
        var list = _catalog.CommentsOf(photo);
        return list.Length == 0 ? 0 : list[rng.Next(Math.Min(PopularShown, list.Length))];
    }

    /// <summary>Another of the video's popular comments than the one shown (the same when it has no other).</summary>
    private int OtherPopular(int photo, int current, Random rng)
    {
        var list = _catalog.CommentsOf(photo);
        int pool = Math.Min(PopularPool, list.Length);
        if (pool <= 1) return current;
        int pick = list[rng.Next(pool)];
        return pick == current ? list[(Array.IndexOf(list[..pool].ToArray(), pick) + 1) % pool] : pick;
    }

    /// <summary>Keeps a random non-empty part of the interacted comments and fills up with other popular ones of the video.</summary>
    private CommentEntry Mixed(CommentEntry entry, Random rng)
    {
        var list = _catalog.CommentsOf(entry.Photo);
        int pool = Math.Min(PopularPool, list.Length);
        if (pool == 0 || entry.Comments.Length == 0) return entry;
        int keep = 1 + rng.Next(entry.Comments.Length);
        var mixed = entry.Comments.OrderBy(_ => rng.Next()).Take(keep).ToList();
        while (mixed.Count < entry.Comments.Length)
        {
            var c = list[rng.Next(pool)];
            if (!mixed.Contains(c)) mixed.Add(c);
            else if (pool <= mixed.Count) break;
        }
        return entry with { Comments = mixed.ToArray() };
    }
}
