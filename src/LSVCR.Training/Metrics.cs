namespace LSVCR.Training;

/// <summary>
/// Ranking metrics of MODEL.md §5 from the 0/1 relevance of a ranked candidate list. Ranks are 1-based and
/// pessimistic: a candidate scoring the same as a positive is ranked before it when it is a negative (and tied
/// positives keep their candidate order), so ties never favour a positive — a constant scorer gets no credit.
/// </summary>
public static class Metrics
{
    /// <summary>
    /// Pessimistic 1-based ranks of the positives among the valid candidates, in candidate order.
    /// <paramref name="valid"/> (optional) excludes padding candidates from the list altogether.
    /// </summary>
    public static int[] RanksOfPositives(ReadOnlySpan<float> scores, ReadOnlySpan<bool> positive, ReadOnlySpan<bool> valid = default)
    {
        if (positive.Length != scores.Length || (!valid.IsEmpty && valid.Length != scores.Length))
            throw new ArgumentException($"{scores.Length} scores but {positive.Length} relevance flags / {valid.Length} validity flags");
        int count = 0;
        for (int i = 0; i < positive.Length; i++)
            if (positive[i] && (valid.IsEmpty || valid[i])) count++;
        var ranks = new int[count];
        int r = 0;
        for (int p = 0; p < scores.Length; p++)
        {
            if (!positive[p] || (!valid.IsEmpty && !valid[p])) continue;
            float s = scores[p];
            int before = 0;
            for (int c = 0; c < scores.Length; c++)
            {
                if (c == p || (!valid.IsEmpty && !valid[c])) continue;
                // NaN compares false everywhere; count it as ahead so a broken score cannot look good.
                if (scores[c] > s || float.IsNaN(s) || (scores[c] == s && (!positive[c] || c < p))) before++;
            }
            ranks[r++] = before + 1;
        }
        return ranks;
    }

    /// <summary>Rank of the single positive at <paramref name="positive"/> (full ranking: pad column excluded via <paramref name="skip"/>).</summary>
    public static int RankOfSingle(ReadOnlySpan<float> scores, int positive, int skip = -1)
    {
        float s = scores[positive];
        int before = 0;
        for (int c = 0; c < scores.Length; c++)
            if (c != positive && c != skip && (scores[c] >= s || float.IsNaN(s))) before++;
        return before + 1;
    }

    public static double Hit(ReadOnlySpan<int> ranks, int k)
    {
        foreach (int r in ranks) if (r <= k) return 1;
        return 0;
    }

    public static double Recall(ReadOnlySpan<int> ranks, int k)
    {
        if (ranks.IsEmpty) return 0;
        int hits = 0;
        foreach (int r in ranks) if (r <= k) hits++;
        return (double)hits / ranks.Length;
    }

    /// <summary>DCG with gain 1/log2(rank+1) over positives in the top k, divided by the DCG of min(#positives, k) positives at the top.</summary>
    public static double Ndcg(ReadOnlySpan<int> ranks, int k)
    {
        if (ranks.IsEmpty) return 0;
        double dcg = 0, ideal = 0;
        foreach (int r in ranks) if (r <= k) dcg += 1 / Math.Log2(r + 1);
        for (int i = 1; i <= Math.Min(ranks.Length, k); i++) ideal += 1 / Math.Log2(i + 1);
        return dcg / ideal;
    }

    public static double Mrr(ReadOnlySpan<int> ranks, int k)
    {
        int best = int.MaxValue;
        foreach (int r in ranks) best = Math.Min(best, r);
        return best <= k ? 1.0 / best : 0;
    }
}

/// <summary>Averages the metrics over examples. Names are <c>hit@k</c>, <c>recall@k</c>, <c>ndcg@k</c>, <c>mrr@k</c>.</summary>
public sealed class MetricAccumulator(IReadOnlyList<int> ks)
{
    private static readonly string[] Kinds = ["hit", "recall", "ndcg", "mrr"];
    private readonly double[] _sums = new double[ks.Count * Kinds.Length];

    public int Examples { get; private set; }

    public void Add(ReadOnlySpan<int> ranks)
    {
        for (int i = 0; i < ks.Count; i++)
        {
            int k = ks[i];
            _sums[i * 4] += Metrics.Hit(ranks, k);
            _sums[i * 4 + 1] += Metrics.Recall(ranks, k);
            _sums[i * 4 + 2] += Metrics.Ndcg(ranks, k);
            _sums[i * 4 + 3] += Metrics.Mrr(ranks, k);
        }
        Examples++;
    }

    /// <summary>Means in a stable order: by k, then hit, recall, ndcg, mrr. All zero when there were no examples.</summary>
    public IReadOnlyDictionary<string, double> Result()
    {
        var result = new Dictionary<string, double>();
        for (int i = 0; i < ks.Count; i++)
            for (int j = 0; j < Kinds.Length; j++)
                result[$"{Kinds[j]}@{ks[i]}"] = Examples == 0 ? 0 : _sums[i * 4 + j] / Examples;
        return result;
    }
}
