using System.Runtime.CompilerServices;
using static LSVCR.Modeling.Cpu.CpuKernels;
using static TorchSharp.torch;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace LSVCR.Modeling;

/// <summary>
/// The mean of the listed rows of a fixed (not trained) table — each comment-history entry's comment texts, all of
/// them (<see cref="CommentBags"/>: flat ids with CSR offsets, no cap per entry) — with pad id 0 excluded from sum and
/// count and an entry without comments giving 0: what a mean-mode EmbeddingBag with padding_idx 0 computes (rows
/// added in list order, then divided by the count), in parallel over entries. <see cref="CommentBags.Mean"/> is the
/// same mean in plain libtorch ops (other dtypes and devices).
/// <para>Why: libtorch's CPU EmbeddingBag adds row by row with a BLAS axpy; at 25,600 entries × 3 comments × 256
/// floats that was ≈ 9 % of the forward outside the transformer layers. No package offers it, hence this kernel.</para>
/// </summary>
internal static unsafe class GatherMean
{
    private const int ChunkEntries = 256;

    /// <param name="table">[N, E].</param>
    /// <param name="bags">The entries' comment ids.</param>
    /// <returns>[bags.Entries, E]</returns>
    public static Tensor Of(Tensor table, CommentBags bags)
    {
        if (table.dim() != 2) throw new ArgumentException("GatherMean needs an [N, E] table.");
        var e = (int)table.shape[1];
        using var flat = bags.Ids.to(ScalarType.Int32).contiguous();
        if (flat.numel() > 0 && (flat.min().item<int>() < 0 || flat.max().item<int>() >= table.shape[0]))
            throw new ArgumentException($"GatherMean: an id is outside the table's {table.shape[0]} rows.");
        if (table.dtype != ScalarType.Float32 || table.device_type != TorchSharp.DeviceType.CPU) return bags.Mean(table);
        using var offsets = bags.Offsets.to(ScalarType.Int32).contiguous();
        var entries = (int)bags.Entries;
        var output = empty(entries, e, dtype: ScalarType.Float32);
        using var source = table.contiguous();
        var (src, idp, offp, dst) = ((nint)Ptr(source), (nint)Int32Ptr(flat), (nint)Int32Ptr(offsets), (nint)Ptr(output));
        ForEach((entries + ChunkEntries - 1) / ChunkEntries, 0, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (c, _) =>
        {
            var ids = (int*)idp;
            var off = (int*)offp;
            for (var i = c * ChunkEntries; i < Math.Min(entries, (c + 1) * ChunkEntries); i++)
            {
                var row = new Span<float>((float*)dst + (long)i * e, e);
                row.Clear();
                var count = 0;
                // Rows are random 1 KB reads from a table far larger than the caches: fetch the entry a few ahead.
                if (i + PrefetchLookahead < entries)
                    for (var j = off[i + PrefetchLookahead]; j < off[i + PrefetchLookahead + 1]; j++) Prefetch((float*)src + (long)ids[j] * e, e);
                for (var j = off[i]; j < off[i + 1]; j++)
                {
                    var id = ids[j];
                    if (id == 0) continue;
                    TensorPrimitives.Add(row, new ReadOnlySpan<float>((float*)src + (long)id * e, e), row);
                    count++;
                }
                if (count > 1) TensorPrimitives.Divide(row, count, row);
            }
        });
        return output;
    }
}
