using LSVCR.Data;

namespace LSVCR.Training;

/// <summary>
/// Candidate lists for training and evaluation (MODEL.md §4–5). All draws come from the caller's seeded
/// <see cref="Random"/>, consumed example by example, so a list depends only on the seed and the example order —
/// never on the batch size or the model being evaluated.
/// </summary>
public static class Sampling
{
    /// <summary>Appends k distinct values of [0, m) to <paramref name="into"/> (Floyd's algorithm: O(k), any m).</summary>
    public static void Distinct(Random rng, int m, int k, List<int> into)
    {
        k = Math.Min(k, m);
        var seen = new HashSet<int>(k);
        for (int j = m - k; j < m; j++)
        {
            int t = rng.Next(j + 1);
            int pick = seen.Add(t) ? t : j;
            if (pick == j) seen.Add(j);
            into.Add(pick);
        }
    }

    public static void Shuffle<T>(Random rng, Span<T> a)
    {
        for (int i = a.Length - 1; i > 0; i--)
        {
            int j = rng.Next(i + 1);
            (a[i], a[j]) = (a[j], a[i]);
        }
    }

    /// <summary>
    /// Rec sampled protocol: the target plus <paramref name="negatives"/> videos drawn uniformly without replacement
    /// from the non-pad videos other than the target, shuffled. Fewer when the catalogue is smaller.
    /// </summary>
    public static int[] RecCandidates(Random rng, int photoCount, int target, int negatives)
    {
        var list = new List<int>(negatives + 1) { target };
        NegativeVideos(rng, photoCount, target, negatives, list);
        var a = list.ToArray();
        Shuffle(rng, a.AsSpan());
        return a;
    }

    /// <summary>Appends up to k distinct non-pad videos other than <paramref name="target"/>.</summary>
    public static void NegativeVideos(Random rng, int photoCount, int target, int k, List<int> into)
    {
        // Draw from [0, m) over the videos 1..photoCount-1 with the target removed, then map back.
        int m = photoCount - 1 - (target >= 1 && target < photoCount ? 1 : 0);
        int start = into.Count;
        Distinct(rng, m, k, into);
        for (int i = start; i < into.Count; i++)
        {
            int v = into[i] + 1;
            if (target >= 1 && v >= target) v++;
            into[i] = v;
        }
    }

    /// <summary>
    /// CommRank evaluation protocol: every comment of the watched video when they are at most <paramref name="max"/>,
    /// else all positives plus random other comments of the video up to <paramref name="max"/>; shuffled.
    /// Positives missing from the video's list are added (so an example is never unanswerable).
    /// </summary>
    public static (int[] Candidates, bool[] Positive) CommRankCandidates(Random rng, Catalog catalog, int video, ReadOnlySpan<int> positives, int max)
    {
        var pos = new HashSet<int>();
        foreach (int c in positives) if (c > 0) pos.Add(c);
        var others = new List<int>();
        foreach (int c in catalog.CommentsOf(video)) if (!pos.Contains(c)) others.Add(c);
        var list = new List<int>(Math.Min(max, pos.Count + others.Count));
        foreach (int c in positives) if (c > 0 && !list.Contains(c)) list.Add(c);
        int room = Math.Max(0, max - list.Count);
        if (others.Count <= room) list.AddRange(others);
        else
        {
            var picked = new List<int>(room);
            Distinct(rng, others.Count, room, picked);
            foreach (int i in picked) list.Add(others[i]);
        }
        var candidates = list.ToArray();
        Shuffle(rng, candidates.AsSpan());
        var flags = new bool[candidates.Length];
        for (int i = 0; i < candidates.Length; i++) flags[i] = pos.Contains(candidates[i]);
        return (candidates, flags);
    }

    /// <summary>
    /// CommRank training candidates (§4): one positive (uniformly one of the example's positives) first, then
    /// <paramref name="negatives"/> of the video's other comments without replacement; when the video has too few,
    /// random comments of the whole catalogue fill the rest (0 = pad only if the catalogue itself is exhausted).
    /// </summary>
    public static void CommRankTraining(Random rng, Catalog catalog, int video, ReadOnlySpan<int> positives, int negatives, Span<long> into)
    {
        into.Clear();
        into[0] = positives[rng.Next(positives.Length)];
        var others = new List<int>();
        foreach (int c in catalog.CommentsOf(video)) if (positives.IndexOf(c) < 0) others.Add(c);
        int n = 1;
        if (others.Count <= negatives)
            foreach (int c in others) into[n++] = c;
        else
        {
            var picked = new List<int>(negatives);
            Distinct(rng, others.Count, negatives, picked);
            foreach (int i in picked) into[n++] = others[i];
        }
        // Fallback: uniform catalogue comments that are neither positives nor already drawn; bounded tries so a
        // tiny catalogue leaves pads instead of looping.
        for (int tries = 0; n < into.Length && tries < 20 * negatives && catalog.CommentCount > 1; tries++)
        {
            int c = 1 + rng.Next(catalog.CommentCount - 1);
            if (positives.IndexOf(c) >= 0 || into[..n].Contains((long)c)) continue;
            into[n++] = c;
        }
    }
}
