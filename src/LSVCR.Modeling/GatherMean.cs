using System.Runtime.CompilerServices;
using static LSVCR.Modeling.Cpu.CpuKernels;
using static TorchSharp.torch;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace LSVCR.Modeling;

/// <summary>
/// The mean of the listed rows of a fixed (not trained) table — each comment-history entry's comment texts — with
/// pad id 0 excluded from sum and count and an entry without comments giving 0: what a mean-mode EmbeddingBag with
/// padding_idx 0 computes (rows added in list order, then divided by the count), in parallel over entries.
/// <para>Why: libtorch's CPU EmbeddingBag adds row by row with a BLAS axpy; at 25,600 entries × 3 comments × 256
/// floats that was ≈ 9 % of the forward outside the transformer layers. No package offers it, hence this kernel.</para>
/// </summary>
internal static unsafe class GatherMean
{
    private const int ChunkEntries = 256;

    /// <param name="table">[N, E] float32.</param>
    /// <param name="ids">[..., K] row ids (0 = pad).</param>
    /// <returns>[..., E]</returns>
    public static Tensor Of(Tensor table, Tensor ids)
    {
        if (table.dim() != 2) throw new ArgumentException("GatherMean needs an [N, E] table.");
        var (k, e) = ((int)ids.shape[^1], (int)table.shape[1]);
        using var flat = ids.reshape(-1, k).to(ScalarType.Int32).contiguous();
        if (flat.numel() > 0 && (flat.min().item<int>() < 0 || flat.max().item<int>() >= table.shape[0]))
            throw new ArgumentException($"GatherMean: an id is outside the table's {table.shape[0]} rows.");
        if (table.dtype != ScalarType.Float32) return Written(table, ids);
        var entries = (int)flat.shape[0];
        var output = empty(entries, e, dtype: ScalarType.Float32);
        using var source = table.contiguous();
        var (src, idp, dst) = ((nint)Ptr(source), (nint)Int32Ptr(flat), (nint)Ptr(output));
        ForEach((entries + ChunkEntries - 1) / ChunkEntries, 0, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (c, _) =>
        {
            for (var i = c * ChunkEntries; i < Math.Min(entries, (c + 1) * ChunkEntries); i++)
            {
                var row = new Span<float>((float*)dst + (long)i * e, e);
                row.Clear();
                var count = 0;
                // Rows are random 1 KB reads from a table far larger than the caches: fetch the entry a few ahead.
                if (i + PrefetchLookahead < entries)
                    for (var j = 0; j < k; j++) Prefetch((float*)src + (long)((int*)idp)[(long)(i + PrefetchLookahead) * k + j] * e, e);
                for (var j = 0; j < k; j++)
                {
                    var id = ((int*)idp)[(long)i * k + j];
                    if (id == 0) continue;
                    TensorPrimitives.Add(row, new ReadOnlySpan<float>((float*)src + (long)id * e, e), row);
                    count++;
                }
                if (count > 1) TensorPrimitives.Divide(row, count, row);
            }
        });
        return output.view([.. ids.shape[..^1], e]);
    }

    /// <summary>The same mean with libtorch ops (tables of other dtypes).</summary>
    private static Tensor Written(Tensor table, Tensor ids)
    {
        using var scope = NewDisposeScope();
        var mask = ids.ne(0).unsqueeze(-1).to(table.dtype);
        var rows = table.index_select(0, ids.reshape(-1)).view([.. ids.shape, table.shape[1]]);
        return rows.mul(mask).sum(-2).div(mask.sum(-2).clamp_min(1)).MoveToOuterDisposeScope();
    }
}
