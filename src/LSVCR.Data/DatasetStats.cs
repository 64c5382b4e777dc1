namespace LSVCR.Data;

/// <summary>Summary of a distribution of counts (nearest-rank percentiles).</summary>
public sealed record Distribution(long Count, int Min, double Median, int P90, int Max, double Mean)
{
    public static Distribution Of(int[] values)
    {
        if (values.Length == 0) return new(0, 0, 0, 0, 0, 0);
        var sorted = (int[])values.Clone();
        Array.Sort(sorted);
        int n = sorted.Length;
        double median = n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0;
        int p90 = sorted[Math.Max(0, (int)Math.Ceiling(0.9 * n) - 1)];
        return new(n, sorted[0], median, p90, sorted[^1], sorted.Average(v => (double)v));
    }
}

/// <summary>Examples and history lengths of one task/split.</summary>
public sealed record SetStats(TaskKind Task, Split Split, int Examples, int Users,
    Distribution VideoHistory, Distribution CommentHistoryEntries, Distribution CommentHistoryComments, Distribution Positives);

/// <summary>
/// What a dataset holds. <see cref="Interactions"/> counts distinct (user, liked video) pairs — every video in a video
/// history or a Rec target — plus distinct (user, comment) pairs — every comment in a comment history or a CommRank
/// positive. <see cref="HistoryEntries"/> counts the ids stored in all histories (what the example files weigh).
/// </summary>
public sealed record DatasetStats(int Users, int Videos, int Comments, long Interactions, long LikedVideos,
    long CommentInteractions, long HistoryEntries, Distribution CommentsPerVideo, IReadOnlyList<SetStats> Sets)
{
    public static DatasetStats Compute(LsvcrDataset dataset)
    {
        var users = new Dictionary<string, int>(StringComparer.Ordinal);
        var liked = new HashSet<long>();
        var commented = new HashSet<long>();
        long entries = 0;
        var sets = new List<SetStats>();
        foreach (var set in dataset.Sets)
        {
            var setUsers = new HashSet<string>(StringComparer.Ordinal);
            int n = set.Count;
            int[] videos = new int[n], entryCounts = new int[n], commentCounts = new int[n], positives = new int[n];
            for (int i = 0; i < n; i++)
            {
                setUsers.Add(set.UserIds[i]);
                if (!users.TryGetValue(set.UserIds[i], out int u)) users[set.UserIds[i]] = u = users.Count;
                long key = (long)u << 32;
                var history = set.PhotoHistoryOf(i);
                foreach (int p in history) liked.Add(key | (uint)p);
                if (set.Task == TaskKind.Rec) liked.Add(key | (uint)set.TargetPhoto[i]);
                var (start, end) = set.CommentEntriesOf(i);
                for (int e = start; e < end; e++)
                    foreach (int c in set.CommentsOfEntry(e)) commented.Add(key | (uint)c);
                foreach (int c in set.PositivesOf(i)) commented.Add(key | (uint)c);
                videos[i] = history.Length;
                entryCounts[i] = end - start;
                commentCounts[i] = set.CommentEntryOffsets[end] - set.CommentEntryOffsets[start];
                positives[i] = set.PositivesOf(i).Length;
                entries += videos[i] + commentCounts[i];
            }
            sets.Add(new(set.Task, set.Split, n, setUsers.Count, Distribution.Of(videos), Distribution.Of(entryCounts),
                Distribution.Of(commentCounts), Distribution.Of(positives)));
        }
        var cat = dataset.Catalog;
        var perVideo = new int[cat.PhotoCount - 1];
        for (int p = 1; p < cat.PhotoCount; p++) perVideo[p - 1] = cat.CommentsOf(p).Length;
        return new(users.Count, cat.PhotoCount - 1, cat.CommentCount - 1, liked.Count + (long)commented.Count, liked.Count,
            commented.Count, entries, Distribution.Of(perVideo), sets);
    }
}
