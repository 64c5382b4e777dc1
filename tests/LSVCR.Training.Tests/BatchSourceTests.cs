using LSVCR.Data;

namespace LSVCR.Training.Tests;

public class BatchSourceTests
{
    [Fact]
    public void Evaluation_batch_is_left_aligned_padded_and_shows_the_first_popular_comment()
    {
        var data = Tiny.Dataset();
        var source = new BatchSource(data.Catalog, data[TaskKind.Rec, Split.Test], training: false);
        var b = source.Assemble([0, 1], new Random(0));
        Assert.Equal((2, 2, 2), (b.Size, b.Lp, b.Lc));
        Assert.Equal([1L, 3, 4, 0], b.PhotoHistory);
        // v1's most popular comment is 1, v3 has none (0), v4's is 6; padding stays 0.
        Assert.Equal([1L, 0, 6, 0], b.PhotoHistoryComment);
        Assert.Equal([1L, 4, 0, 0], b.CommentHistoryPhoto);
        // Flat with offsets: row 0 = entries (v1: 2, 3) and (v4: 6); row 1 has no comment history (two empty entries).
        Assert.Equal([2L, 3, 6], b.CommentHistoryComments);
        Assert.Equal([0L, 2, 3, 3, 3], b.CommentHistoryOffsets);
        Assert.Equal([2L, 3], b.Target);
        Assert.Null(b.Candidates);
    }

    [Fact]
    public void Histories_keep_the_most_recent_max_position_entries()
    {
        var builder = new ExampleSetBuilder(TaskKind.Rec, Split.Train);
        int[] history = [.. Enumerable.Range(0, 60).Select(i => 1 + i % 4)];
        var entries = Enumerable.Range(0, 55).Select(i => (1 + i % 4, (IReadOnlyList<int>)[i % 4 == 0 ? 1 : 0])).ToList();
        builder.Add("u", 2, history, entries);
        var source = new BatchSource(Tiny.Catalog(), builder.Build(), training: false, maxPosition: 50);
        var b = source.Assemble([0], new Random(0));
        Assert.Equal(50, b.Lp);
        Assert.Equal(history[10..].Select(v => (long)v), b.PhotoHistory);
        Assert.Equal(50, b.Lc);
        Assert.Equal(entries[5..].Select(e => (long)e.Item1), b.CommentHistoryPhoto);
    }

    /// <summary>MODEL.md §2.3: the model averages all the comments of an entry (the reference collator has no cap), so
    /// an entry with 40 comments reaches the batch with all 40, in the dataset's order.</summary>
    [Fact]
    public void A_comment_entry_keeps_all_its_comments_beyond_sixteen()
    {
        var builder = new ExampleSetBuilder(TaskKind.Rec, Split.Test);
        int[] many = [.. Enumerable.Range(0, 40).Select(i => 1 + i * 5 % 7)];
        builder.Add("u", 2, [1], [(4, [6]), (1, many)]);
        builder.Add("v", 3, [2], [(2, [5])]);
        var source = new BatchSource(Tiny.Catalog(), builder.Build(), training: false);
        var b = source.Assemble([0, 1], new Random(0));
        Assert.Equal(2, b.Lc);
        Assert.Equal([4L, 1, 2, 0], b.CommentHistoryPhoto);
        Assert.Equal([6L, .. many.Select(c => (long)c), 5], b.CommentHistoryComments);
        Assert.Equal([0L, 1, 41, 42, 42], b.CommentHistoryOffsets);
        using var sr = b.ToSrBatch();
        Assert.Equal(4, sr.CommentHistoryComments.Entries);
        Assert.Equal(42, sr.CommentHistoryComments.Ids.numel());
    }

    [Fact]
    public void Training_draws_the_history_comment_from_the_first_three_uniformly()
    {
        var data = Tiny.Dataset();
        var source = new BatchSource(data.Catalog, data[TaskKind.Rec, Split.Train], training: true);
        var rng = new Random(11);
        var counts = new Dictionary<long, int>();
        for (int i = 0; i < 600; i++)
        {
            var b = source.Assemble([0], rng);   // history v1 (comments 1,2,3,4), v3 (none)
            counts[b.PhotoHistoryComment[0]] = counts.GetValueOrDefault(b.PhotoHistoryComment[0]) + 1;
            Assert.Equal(0, b.PhotoHistoryComment[1]);
        }
        Assert.Equal([1L, 2, 3], counts.Keys.Order());
        Assert.All(counts.Values, c => Assert.InRange(c, 150, 250));
    }

    [Fact]
    public void No_comments_variant_empties_the_comment_history()
    {
        var data = Tiny.Dataset();
        var source = new BatchSource(data.Catalog, data[TaskKind.Rec, Split.Test], training: false, dropComments: true);
        var b = source.Assemble([0, 2], new Random(0));
        Assert.Equal(1, b.Lc);
        Assert.All(b.CommentHistoryPhoto, x => Assert.Equal(0, x));
        Assert.Empty(b.CommentHistoryComments);
        Assert.Equal([0L, 0, 0], b.CommentHistoryOffsets);
        Assert.Equal([1L, 3, 3, 4], b.PhotoHistory);   // the video history is untouched
    }

    [Fact]
    public void CommRank_training_batches_carry_20_candidates_positive_first()
    {
        var data = Tiny.Dataset();
        var set = data[TaskKind.CommRank, Split.Test];   // any split: the source is told it is training
        var source = new BatchSource(data.Catalog, set, training: true);
        var b = source.Assemble([0, 1], new Random(4));
        Assert.Equal(20, b.CandidateCount);
        Assert.Equal(3, b.Candidates![0]);
        Assert.Contains(b.Candidates[20], new long[] { 6, 7 });
    }

    [Fact]
    public void Rec_sampled_softmax_batches_carry_target_then_k_negatives()
    {
        var data = Tiny.Dataset();
        var source = new BatchSource(data.Catalog, data[TaskKind.Rec, Split.Train], training: true, negatives: 2);
        var b = source.Assemble([0], new Random(4));
        Assert.Equal(3, b.CandidateCount);
        Assert.Equal(2, b.Candidates![0]);
        Assert.DoesNotContain(2L, b.Candidates[1..]);
        Assert.DoesNotContain(0L, b.Candidates);
    }

    [Fact]
    public void An_epoch_is_a_shuffled_pass_reproducible_from_the_seed()
    {
        var data = Tiny.Dataset();
        var source = new BatchSource(data.Catalog, data[TaskKind.Rec, Split.Train], training: true);
        int[] Order(int seed) => [.. source.Epoch(2, new Random(seed), 2, default).SelectMany(b => b.Examples)];
        Assert.Equal([0, 1, 2], Order(1).Order());
        Assert.Equal(Order(1), Order(1));
        Assert.Contains(Enumerable.Range(0, 10), s => !Order(s).SequenceEqual(Order(1)));
    }

    [Fact]
    public void Prefetch_preserves_order_and_surfaces_producer_errors()
    {
        Assert.Equal(Enumerable.Range(0, 50), Prefetch.Run(Enumerable.Range(0, 50), 3, default));
        static IEnumerable<int> Failing()
        {
            yield return 1;
            throw new InvalidDataException("broken example");
        }
        var e = Assert.Throws<InvalidDataException>(() => Prefetch.Run(Failing(), 2, default).ToList());
        Assert.Equal("broken example", e.Message);
    }
}
