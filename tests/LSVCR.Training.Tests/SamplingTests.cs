using LSVCR.Data;

namespace LSVCR.Training.Tests;

public class SamplingTests
{
    [Fact]
    public void Rec_candidates_are_the_target_and_99_distinct_non_pad_others_reproducibly()
    {
        var a = Sampling.RecCandidates(new Random(5), 201, 7, 99);
        var b = Sampling.RecCandidates(new Random(5), 201, 7, 99);
        Assert.Equal(a, b);
        Assert.Equal(100, a.Length);
        Assert.Equal(100, a.Distinct().Count());
        Assert.Single(a, v => v == 7);
        Assert.All(a, v => Assert.InRange(v, 1, 200));
        // Shuffled: over several seeds the target is not always in the same slot.
        var slots = Enumerable.Range(0, 20).Select(s => Array.IndexOf(Sampling.RecCandidates(new Random(s), 201, 7, 99), 7)).Distinct().Count();
        Assert.True(slots > 5, $"target occupied only {slots} distinct slots");
    }

    [Fact]
    public void Rec_candidates_take_every_video_when_the_catalogue_is_small()
    {
        var c = Sampling.RecCandidates(new Random(1), 11, 3, 99);
        Assert.Equal(Enumerable.Range(1, 10), c.Order());
    }

    [Fact]
    public void Distinct_draws_cover_the_range_uniformly_enough()
    {
        var counts = new int[10];
        var rng = new Random(3);
        for (int i = 0; i < 2000; i++)
        {
            var list = new List<int>();
            Sampling.Distinct(rng, 10, 3, list);
            Assert.Equal(3, list.Distinct().Count());
            foreach (int v in list) counts[v]++;
        }
        // 6000 draws over 10 values: 600 expected each.
        Assert.All(counts, c => Assert.InRange(c, 500, 700));
    }

    [Fact]
    public void CommRank_evaluation_takes_all_comments_of_a_small_video_and_adds_missing_positives()
    {
        var catalog = Tiny.Catalog();
        var (c, p) = Sampling.CommRankCandidates(new Random(1), catalog, 1, [3], 100);
        Assert.Equal([1, 2, 3, 4], c.Order());
        Assert.Equal([3], c.Where((_, i) => p[i]));
        // Positive 6 belongs to v4, not v2: it is added so the example stays answerable.
        var (c2, p2) = Sampling.CommRankCandidates(new Random(1), catalog, 2, [6], 100);
        Assert.Equal([5, 6], c2.Order());
        Assert.Equal([6], c2.Where((_, i) => p2[i]));
    }

    [Fact]
    public void CommRank_evaluation_caps_large_videos_at_100_with_every_positive()
    {
        var catalog = BigVideoCatalog(150);
        var (c, p) = Sampling.CommRankCandidates(new Random(9), catalog, 1, [140, 150], 100);
        Assert.Equal(100, c.Length);
        Assert.Equal(100, c.Distinct().Count());
        Assert.All(c, x => Assert.InRange(x, 1, 150));
        Assert.Equal([140, 150], c.Where((_, i) => p[i]).Order());
    }

    [Fact]
    public void CommRank_training_puts_one_positive_first_then_same_video_negatives_then_random_fill()
    {
        var catalog = BigVideoCatalog(150);
        Span<long> into = new long[20];
        Sampling.CommRankTraining(new Random(2), catalog, 1, [10, 11], 19, into);
        Assert.Contains(into[0], new long[] { 10, 11 });
        Assert.Equal(20, into.ToArray().Distinct().Count());
        Assert.All(into[1..].ToArray(), x => Assert.True(x is not (10 or 11) and >= 1 and <= 150));

        // Tiny: v1 has comments 1..4; positive 2 → negatives 1, 3, 4 from the video, 16 more from elsewhere (only 3
        // other comments exist: 5, 6, 7), the rest stays pad.
        var tiny = Tiny.Catalog();
        Sampling.CommRankTraining(new Random(2), tiny, 1, [2], 19, into);
        Assert.Equal(2, into[0]);
        Assert.Equal([1L, 3, 4], into[1..4].ToArray().Order());
        Assert.Equal([5L, 6, 7], into[4..7].ToArray().Order());
        Assert.All(into[7..].ToArray(), x => Assert.Equal(0, x));
    }

    private static Catalog BigVideoCatalog(int comments)
    {
        var ids = new[] { Catalog.PadId }.Concat(Enumerable.Range(1, comments).Select(i => $"c{i}")).ToArray();
        return new Catalog([Catalog.PadId, "v1"], ["", "t"], [0, 0, comments], [.. Enumerable.Range(1, comments)], ids, [.. ids]);
    }
}
