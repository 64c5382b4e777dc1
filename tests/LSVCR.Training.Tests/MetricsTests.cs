namespace LSVCR.Training.Tests;

public class MetricsTests
{
    private const double Eps = 1e-12;
    private static readonly double L2 = 1 / Math.Log2(3), L3 = 1 / Math.Log2(4);   // gains at ranks 2 and 3

    [Fact]
    public void Single_positive_at_rank_3_scores_by_hand()
    {
        // Positive (index 1) scores 0.5; two candidates score higher → rank 3.
        var ranks = Metrics.RanksOfPositives([0.9f, 0.5f, 0.7f, 0.1f], [false, true, false, false]);
        Assert.Equal([3], ranks);
        Assert.Equal(0, Metrics.Hit(ranks, 1));
        Assert.Equal(1, Metrics.Hit(ranks, 5));
        Assert.Equal(0, Metrics.Recall(ranks, 2));
        Assert.Equal(1, Metrics.Recall(ranks, 3));
        Assert.Equal(0.5, Metrics.Ndcg(ranks, 5), Eps);          // 1/log2(4) / 1
        Assert.Equal(0, Metrics.Ndcg(ranks, 2), Eps);
        Assert.Equal(1.0 / 3, Metrics.Mrr(ranks, 5), Eps);
        Assert.Equal(0, Metrics.Mrr(ranks, 2), Eps);
    }

    [Fact]
    public void Several_positives_use_the_ideal_dcg_of_min_positives_and_k()
    {
        // Scores order: c0 (neg) 0.9, c1 (pos) 0.8, c2 (neg) 0.7, c3 (pos) 0.6, c4 (pos) 0.1 → positive ranks 2, 4, 5.
        var ranks = Metrics.RanksOfPositives([0.9f, 0.8f, 0.7f, 0.6f, 0.1f], [false, true, false, true, true]);
        Assert.Equal([2, 4, 5], ranks);
        Assert.Equal(1.0 / 3, Metrics.Recall(ranks, 3), Eps);
        Assert.Equal(2.0 / 3, Metrics.Recall(ranks, 4), Eps);
        // k = 3: DCG = gain(2); ideal = min(3, 3) positives at ranks 1..3.
        Assert.Equal(L2 / (1 + L2 + L3), Metrics.Ndcg(ranks, 3), Eps);
        // k = 2: ideal covers only 2 positives.
        Assert.Equal(L2 / (1 + L2), Metrics.Ndcg(ranks, 2), Eps);
        // k = 10: all three found; DCG = g(2)+g(4)+g(5).
        double dcg = L2 + 1 / Math.Log2(5) + 1 / Math.Log2(6);
        Assert.Equal(dcg / (1 + L2 + L3), Metrics.Ndcg(ranks, 10), Eps);
        Assert.Equal(0.5, Metrics.Mrr(ranks, 10), Eps);
        Assert.Equal(1, Metrics.Hit(ranks, 2));
    }

    [Fact]
    public void Ties_never_favour_the_positive()
    {
        // All equal: the positive ranks after every negative; a constant scorer gets no credit at k < candidates.
        Assert.Equal([4], Metrics.RanksOfPositives([1f, 1f, 1f, 1f], [false, false, true, false]));
        Assert.Equal(4, Metrics.RankOfSingle([1f, 1f, 1f, 1f], 0));
        // Two tied positives with a tied negative: negative first, then the positives in candidate order.
        Assert.Equal([2, 3], Metrics.RanksOfPositives([1f, 1f, 1f], [true, false, true]));
        // NaN score for the positive ranks it last.
        Assert.Equal([3], Metrics.RanksOfPositives([float.NaN, 0f, 1f], [true, false, false]));
    }

    [Fact]
    public void Padding_candidates_are_not_in_the_list_and_small_lists_are_fine_for_large_k()
    {
        // Valid candidates: 0 (pos, 0.2), 1 (neg, 0.3); the pad at index 2 scores highest but does not count.
        var ranks = Metrics.RanksOfPositives([0.2f, 0.3f, 5f], [true, false, false], [true, true, false]);
        Assert.Equal([2], ranks);
        Assert.Equal(1, Metrics.Recall(ranks, 20));
        Assert.Equal(L2, Metrics.Ndcg(ranks, 20), Eps);
        // Full ranking skips the pad column.
        Assert.Equal(2, Metrics.RankOfSingle([9f, 0.2f, 0.3f], 1, skip: 0));
    }

    [Fact]
    public void Accumulator_averages_over_examples()
    {
        var acc = new MetricAccumulator([1, 5]);
        acc.Add([1]);
        acc.Add([3]);
        acc.Add([7]);
        var r = acc.Result();
        Assert.Equal(3, acc.Examples);
        Assert.Equal(1.0 / 3, r["hit@1"], Eps);
        Assert.Equal(2.0 / 3, r["recall@5"], Eps);
        Assert.Equal((1 + 0.5) / 3, r["ndcg@5"], Eps);
        Assert.Equal((1 + 1.0 / 3) / 3, r["mrr@5"], Eps);
        Assert.Equal(["hit@1", "recall@1", "ndcg@1", "mrr@1", "hit@5", "recall@5", "ndcg@5", "mrr@5"], r.Keys);
    }
}
