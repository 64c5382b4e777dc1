using static TorchSharp.torch;

namespace LSVCR.Modeling;

/// <summary>
/// The comments a user interacted with under each comment-history entry of a batch, with no cap on their number
/// (MODEL.md §2.3: the reference collator averages all of them; real entries hold dozens): one flat list of comment
/// ids, entry after entry in row-major (user, position) order, and CSR offsets — entry e's comments are
/// <c>Ids[Offsets[e] .. Offsets[e + 1]]</c>. An entry may be empty (padding positions, entries without comments);
/// a pad id 0 inside a list is skipped by the mean, as a mean-mode EmbeddingBag with padding_idx 0 does.
/// </summary>
public sealed class CommentBags : IDisposable
{
    /// <param name="ids">[N] int64 comment ids.</param>
    /// <param name="offsets">[entries + 1] int64, non-decreasing, from 0 to N.</param>
    public CommentBags(Tensor ids, Tensor offsets)
    {
        if (ids.dim() != 1 || offsets.dim() != 1 || offsets.shape[0] < 1)
            throw new ArgumentException($"CommentBags needs [N] ids and [entries + 1] offsets, got [{string.Join(", ", ids.shape)}] and [{string.Join(", ", offsets.shape)}].");
        if (ids.dtype != ScalarType.Int64 || offsets.dtype != ScalarType.Int64)
            throw new ArgumentException("CommentBags ids and offsets must be int64.");
        Ids = ids;
        Offsets = offsets;
    }

    /// <summary>[N] the comment ids of all entries, in entry order.</summary>
    public Tensor Ids { get; }

    /// <summary>[Entries + 1] where each entry's comments start in <see cref="Ids"/> (the last element is N).</summary>
    public Tensor Offsets { get; }

    public long Entries => Offsets.shape[0] - 1;

    /// <summary><paramref name="entries"/> entries without comments.</summary>
    public static CommentBags Empty(long entries) =>
        new(zeros(0, dtype: ScalarType.Int64), zeros(entries + 1, dtype: ScalarType.Int64));

    /// <summary>From the host arrays a batch assembler writes (copied into tensors).</summary>
    public static CommentBags FromArrays(long[] ids, long[] offsets) => new(tensor(ids), tensor(offsets));

    /// <summary>From a 0-padded [..., K] tensor (tests, benches): each row of K ids is one entry, pads dropped.</summary>
    public static CommentBags FromPadded(Tensor padded)
    {
        var k = padded.shape[^1];
        var rows = padded.reshape(-1, k).to(ScalarType.Int64).cpu();
        var flat = rows.data<long>().ToArray();
        var entries = (int)rows.shape[0];
        var ids = new List<long>(flat.Length);
        var offsets = new long[entries + 1];
        for (var e = 0; e < entries; e++)
        {
            for (var j = 0; j < k; j++)
                if (flat[e * k + j] != 0) ids.Add(flat[e * k + j]);
            offsets[e + 1] = ids.Count;
        }
        return FromArrays([.. ids], offsets);
    }

    /// <summary>The <paramref name="count"/> entries from <paramref name="first"/> on, offsets rebased to 0 (views of
    /// these tensors where possible: a data-parallel shard's part of the batch).</summary>
    public CommentBags Slice(long first, long count)
    {
        var offsets = Offsets.narrow(0, first, count + 1);
        var (start, end) = (offsets[0].item<long>(), offsets[count].item<long>());
        return new CommentBags(Ids.narrow(0, start, end - start), start == 0 ? offsets.alias() : offsets.sub(start));
    }

    /// <summary>
    /// The mean of <paramref name="table"/>'s rows over each entry's comments, [Entries, table columns]: pad ids
    /// excluded from sum and count, an empty entry gives 0. Plain libtorch ops (any device and dtype, differentiable
    /// with respect to the table); the float32 CPU kernel <see cref="GatherMean"/> computes the same values.
    /// </summary>
    public Tensor Mean(Tensor table)
    {
        using var scope = NewDisposeScope();
        var device = table.device;
        var ids = Ids.to(device);
        var offsets = Offsets.to(device);
        var counts = offsets.narrow(0, 1, Entries).sub(offsets.narrow(0, 0, Entries));
        var bag = arange(Entries, dtype: ScalarType.Int64, device: device).repeat_interleave(counts);
        var keep = ids.ne(0).to(table.dtype);
        var rows = table.index_select(0, ids).mul(keep.unsqueeze(1));
        var sums = zeros(Entries, table.shape[1], dtype: table.dtype, device: device).index_add(0, bag, rows, 1);
        var present = zeros(Entries, dtype: table.dtype, device: device).index_add(0, bag, keep, 1);
        return sums.div(present.clamp_min(1).unsqueeze(1)).MoveToOuterDisposeScope();
    }

    /// <summary>Moves both tensors to the enclosing dispose scope (as <c>Tensor.MoveToOuterDisposeScope</c>).</summary>
    public CommentBags MoveToOuterDisposeScope()
    {
        Ids.MoveToOuterDisposeScope();
        Offsets.MoveToOuterDisposeScope();
        return this;
    }

    public void Dispose()
    {
        Ids.Dispose();
        Offsets.Dispose();
    }
}
