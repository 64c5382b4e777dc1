using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LSVCR.Modeling;

/// <summary>
/// The §4 id–text alignment loss over N history positions: each position's normalised id embedding against its
/// normalised text vector, <c>k</c> random negatives per direction, both directions averaged, /T.
/// <para>
/// The reference ranks an N×N random matrix per call (O(N²), the step's bottleneck). This draws the same
/// distribution in O(N·k): positions are randomly permuted and cut into blocks of S = 2k+1; inside a block every
/// position's S−1 block-mates are a uniformly random (S−1)-subset of the other positions, split by cyclic offset
/// into the id→text negatives (offsets 1..k) and the disjoint text→id negatives (offsets k+1..2k). Both directions
/// read one band of the block's logits (<see cref="ModelBackend.IdTextBand"/>; the CPU backend computes and
/// differentiates the band directly).
/// </para>
/// <para>
/// Last partial block: it "borrows" — it is the LAST S entries of the permutation (overlapping the previous block),
/// and only its r not-yet-covered positions contribute. The last S entries of a random permutation are a uniformly
/// random S-subset, so those r positions get the same full-k negative distribution as everybody else.
/// When N &lt; 2k+1 there is a single block of N positions and the N−1 others are split ⌊(N−1)/2⌋ (id→text) /
/// the rest (text→id); the reference would put the position itself among its negatives there.
/// </para>
/// </summary>
public static class IdTextLoss
{
    /// <summary>Block layout of one draw: <c>Index</c> [blocks, S] position ids, <c>Owner</c> [blocks, S] true where
    /// the loss of that slot counts (each position exactly once), <c>K1</c> = id→text negatives (offsets 1..K1),
    /// the text→id negatives are offsets K1+1..S−1.</summary>
    public sealed record Layout(Tensor Index, Tensor Owner, int BlockSize, int K1) : IDisposable
    {
        public void Dispose() { Index.Dispose(); Owner.Dispose(); }
    }

    public static Layout Sample(long n, int negatives, Generator? generator = null)
    {
        if (n < 2) throw new ArgumentOutOfRangeException(nameof(n), "needs at least 2 positions");
        if (negatives < 1) throw new ArgumentOutOfRangeException(nameof(negatives));
        using var scope = NewDisposeScope();
        var s = (int)Math.Min(n, 2L * negatives + 1);
        var k1 = s == 2L * negatives + 1 ? negatives : (s - 1) / 2;
        var perm = randperm(n, generator: generator);
        var full = n / s;
        var rest = (int)(n - full * s);
        Tensor index, owner;
        if (rest == 0)
        {
            index = perm.view(full, s);
            owner = ones(full, s, dtype: ScalarType.Bool);
        }
        else
        {
            var last = perm.narrow(0, n - s, s).unsqueeze(0);
            index = cat([perm.narrow(0, 0, full * s).view(full, s), last], 0);
            var lastOwner = arange(s).ge(s - rest).unsqueeze(0);
            owner = cat([ones(full, s, dtype: ScalarType.Bool), lastOwner], 0);
        }
        return new Layout(index.MoveToOuterDisposeScope(), owner.MoveToOuterDisposeScope(), s, k1);
    }

    /// <summary>Loss over positions: <paramref name="id"/> and <paramref name="text"/> are [M, d] (not yet
    /// normalised); <paramref name="rows"/> (int64, optional) selects the N positions among the M rows, else all.
    /// N &lt; 2 gives 0 (no negatives exist).</summary>
    public static Tensor Compute(Tensor id, Tensor text, int negatives, double temperature, Generator? generator = null, Tensor? rows = null,
        ModelBackend? backend = null)
    {
        var n = rows?.numel() ?? id.shape[0];
        using var layout = n < 2 ? null : Sample(n, negatives, generator);
        return Compute(id, text, layout, temperature, rows, backend);
    }

    /// <summary>The loss over a layout drawn beforehand by <see cref="Sample"/> for the N selected positions (null
    /// when N &lt; 2: the loss is 0); <paramref name="backend"/> null = <see cref="ModelBackend.Select"/> for the
    /// tensors' device and dtype.</summary>
    public static Tensor Compute(Tensor id, Tensor text, Layout? layout, double temperature, Tensor? rows = null, ModelBackend? backend = null)
    {
        if (layout is null) return id.sum().mul(0.0).add(text.sum().mul(0.0));
        var n = rows?.numel() ?? id.shape[0];
        using var scope = NewDisposeScope();
        var s = layout.BlockSize;
        var index = rows is null ? layout.Index : rows.index_select(0, layout.Index.view(-1)).view(layout.Index.shape);
        // The band of each block's logits both directions read: id→text row i over offsets 0..K1, text→id
        // column j over offsets 0..S−1−K1 before it; the positive is offset 0 in both.
        backend ??= ModelBackend.Select(id.device, id.dtype);
        var loss = backend.IdTextBand(id, text, index, layout.Owner, layout.K1, s - 1 - layout.K1, n, temperature);
        return loss.MoveToOuterDisposeScope();
    }
}
