using System.Numerics.Tensors;
using System.Runtime.Intrinsics;

namespace LSVCR.Serving;

/// <summary>Partial top-k of a score row: a k-sized min-heap, with 16- or 8-wide blocks that cannot beat the heap's
/// smallest skipped in one compare. Ties go to the smaller id, so rankings are deterministic.</summary>
public static class TopK
{
    /// <summary>The k best (id, score) of <paramref name="scores"/>, best first; −∞ entries (exclusions) never appear.</summary>
    public static (int Id, float Score)[] Select(ReadOnlySpan<float> scores, int k)
    {
        if (k <= 0) return [];
        var heap = new PriorityQueue<int, (float Score, int Id)>(k + 1, Worst.Instance);
        float min = float.NegativeInfinity;
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; i + 16 <= scores.Length; i += 16)
            {
                var block = Vector512.Create(scores.Slice(i, 16));
                // Once the heap is full, a block with nothing above its minimum cannot enter (ties with the minimum
                // lose to the smaller id already held, as later ids are larger).
                if (heap.Count == k && !Vector512.GreaterThanAny(block, Vector512.Create(min))) continue;
                for (int j = i; j < i + 16; j++) Offer(heap, k, ref min, j, scores[j]);
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            for (; i + 8 <= scores.Length; i += 8)
            {
                var block = Vector256.Create(scores.Slice(i, 8));
                if (heap.Count == k && !Vector256.GreaterThanAny(block, Vector256.Create(min))) continue;
                for (int j = i; j < i + 8; j++) Offer(heap, k, ref min, j, scores[j]);
            }
        }
        for (; i < scores.Length; i++) Offer(heap, k, ref min, i, scores[i]);
        var result = new (int, float)[heap.Count];
        for (int r = result.Length - 1; r >= 0; r--)
        {
            heap.TryDequeue(out var id, out var p);
            result[r] = (id, p.Score);
        }
        return result;
    }

    private static void Offer(PriorityQueue<int, (float Score, int Id)> heap, int k, ref float min, int id, float s)
    {
            if (float.IsNegativeInfinity(s) || float.IsNaN(s)) return;
            if (heap.Count < k)
            {
                heap.Enqueue(id, (s, id));
                if (heap.Count == k) min = heap.TryPeek(out _, out var p) ? p.Score : min;
            }
            else if (s > min)
            {
                heap.EnqueueDequeue(id, (s, id));
                heap.TryPeek(out _, out var p);
                min = p.Score;
            }
    }

    /// <summary>Orders the heap so its root is the worst entry: lowest score, then the largest id.</summary>
    private sealed class Worst : IComparer<(float Score, int Id)>
    {
        public static readonly Worst Instance = new();
        public int Compare((float Score, int Id) a, (float Score, int Id) b)
        {
            var c = a.Score.CompareTo(b.Score);
            return c != 0 ? c : b.Id.CompareTo(a.Id);
        }
    }

    /// <summary>Scores of given candidates: dot(user, vector) / T.</summary>
    public static float Dot(ReadOnlySpan<float> user, ReadOnlySpan<float> vector, float inverseTemperature) =>
        TensorPrimitives.Dot(user, vector) * inverseTemperature;
}
