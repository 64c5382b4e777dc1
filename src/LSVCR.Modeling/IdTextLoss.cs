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
/// into the id→text negatives (offsets 1..k) and the disjoint text→id negatives (offsets k+1..2k). Logits come from one
/// batched matmul [blocks, S, S]; each direction gathers only its k+1 columns (rows) for a fused cross-entropy.
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

    /// <summary>Loss over positions: <paramref name="id"/> and <paramref name="text"/> are [N, d] (not yet normalised).
    /// N &lt; 2 gives 0 (no negatives exist).</summary>
    public static Tensor Compute(Tensor id, Tensor text, int negatives, double temperature, Generator? generator = null)
    {
        var n = id.shape[0];
        if (n < 2) return id.sum().mul(0.0);
        using var scope = NewDisposeScope();
        using var layout = Sample(n, negatives, generator);
        var s = layout.BlockSize;
        // 1/T folded into the [N, d] id side rather than the [blocks, S, S] logits.
        var x = nn.functional.normalize(id, dim: -1).div(temperature);
        var y = nn.functional.normalize(text, dim: -1);
        var flat = layout.Index.view(-1);
        var blocks = layout.Index.shape[0];
        var xb = x.index_select(0, flat).view(blocks, s, -1);
        var yb = y.index_select(0, flat).view(blocks, s, -1);
        var g = bmm(xb, yb.transpose(1, 2)); // g[b,i,j] = x_i·y_j / T
        var (idToText, textToId) = BandMasks(s, layout.K1);
        // id→text: row i over its K1+1 visible columns; text→id: column j over its visible rows. The positive
        // (the diagonal) is visible in both, so each loss is −log_softmax at the diagonal.
        var l1 = g.add(idToText).log_softmax(2).diagonal(0, 1, 2);
        var l2 = g.add(textToId).log_softmax(1).diagonal(0, 1, 2);
        var owner = layout.Owner.to(ScalarType.Float32);
        var loss = l1.add(l2).mul_(owner).sum().div(-2.0 * n);
        return loss.MoveToOuterDisposeScope();
    }

    /// <summary>Additive masks over a block's [S, S] logits selecting what each direction contrasts: entry (i, j)
    /// with offset δ = (j − i) mod S is visible to id→text row i iff δ ≤ K1 (its own text and the K1 texts after it)
    /// and to text→id column j iff δ ≤ S−1−K1 (its own id and the ids at offsets K1+1..S−1 before it). For the
    /// full block (S = 2·K1 + 1) both are the same band, returned once.</summary>
    internal static (Tensor IdToText, Tensor TextToId) BandMasks(int s, int k1)
    {
        using var scope = NewDisposeScope();
        var i = arange(s);
        var delta = i.unsqueeze(0).sub(i.unsqueeze(1)).remainder(s); // δ[i, j] = (j − i) mod S
        Tensor Band(long last) => delta.le(last).to(ScalarType.Float32).sub_(1f).mul_(-Masks.Hidden).unsqueeze(0);
        var first = Band(k1).MoveToOuterDisposeScope();
        var second = s - 1 - k1 == k1 ? first : Band(s - 1 - k1).MoveToOuterDisposeScope();
        return (first, second);
    }
}
