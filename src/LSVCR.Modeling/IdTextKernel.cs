using static LSVCR.Modeling.CpuKernels;
using static TorchSharp.torch;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace LSVCR.Modeling;

/// <summary>
/// The block part of <see cref="IdTextLoss"/> as one autograd node with a hand-written forward and backward.
/// <para>Inside a block of S positions, position i's id→text logits are x_i·y_(i+δ) for offsets δ = 0..K1 and its
/// text→id logits x_(i−δ)·y_i for δ = 0..K2 (mod S; δ = 0 is the positive). Both read the same band
/// B[i, δ] = x_i·y_(i+δ), so only the band is computed (≈ half of the S×S block), from a doubled, transposed copy
/// of the block's y rows; each row and each wrapped diagonal of the band gets a log-sum-exp.</para>
/// <para>Why: written with libtorch ops this is a batched S×S GEMM, mask adds, two log-softmaxes, diagonals and
/// the backward of each over [blocks, S, S] tensors — ≈ 80 ms per history per step on 2 cores for ≈ 2 GFLOP. Here
/// a block stays in L2 and nothing of S×S size is materialised. No package offers it, hence this kernel.</para>
/// Saved for backward: the inputs, the band and both log-sum-exps. The loss is summed per block and then over blocks
/// in a fixed order, so it does not depend on the thread count.
/// </summary>
internal sealed class IdTextKernel : autograd.SingleTensorFunction<IdTextKernel>
{
    public override string Name => nameof(IdTextKernel);

    internal sealed record Spec(int K1, int K2, long Positions);

    /// <param name="xb">[blocks, S, d] normalised id vectors already divided by T.</param>
    /// <param name="yb">[blocks, S, d] normalised text vectors.</param>
    /// <param name="owner">[blocks, S]: 1 where the slot's loss counts (each position once), else 0.</param>
    /// <param name="k1">id→text negatives (offsets 1..k1).</param>
    /// <param name="k2">text→id negatives (offsets 1..k2 before the position).</param>
    /// <param name="positions">N, the divisor: the loss is Σ owner·(id→text + text→id) / (2N).</param>
    public static Tensor Loss(Tensor xb, Tensor yb, Tensor owner, int k1, int k2, long positions)
    {
        if (xb.dtype != ScalarType.Float32 || yb.dtype != ScalarType.Float32 || xb.dim() != 3 || !xb.shape.SequenceEqual(yb.shape))
            throw new ArgumentException("IdTextKernel needs float32 [blocks, S, d] id and text blocks of one shape.");
        if (k1 < 0 || k2 < k1 || k2 < 1 || k2 >= xb.shape[1]) throw new ArgumentException($"IdTextKernel: offsets k1={k1}, k2={k2} do not fit blocks of {xb.shape[1]}.");
        return apply(xb.contiguous(), yb.contiguous(), owner.to(ScalarType.Float32).contiguous(), new Spec(k1, k2, positions));
    }

    private readonly record struct Geometry(int Blocks, int S, int D, int K1, int K2)
    {
        public int W => K2 + 1;                  // band width: offsets 0..K2 (K2 ≥ K1)
        public int Wp => Pad(W);
        public int DoubledRows => S + Wp - 1;    // y (or x) rows with wrap-around, enough for a whole padded band row

        public static Geometry Of(Tensor xb, Spec spec) =>
            new((int)xb.shape[0], (int)xb.shape[1], (int)xb.shape[2], spec.K1, spec.K2);
    }

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var (xb, yb, owner, spec) = ((Tensor)vars[0], (Tensor)vars[1], (Tensor)vars[2], (Spec)vars[3]);
        var g = Geometry.Of(xb, spec);
        var band = empty(g.Blocks, g.S, g.Wp, dtype: ScalarType.Float32);
        var lse = empty(2, g.Blocks, g.S, dtype: ScalarType.Float32);
        var partial = new double[g.Blocks];
        Forward(g, xb, yb, owner, band, lse, partial);
        var total = 0.0;
        foreach (var p in partial) total += p;
        ctx.save_for_backward([xb, yb, owner, band, lse]);
        ctx.save_data("spec", spec);
        return tensor((float)(total / (2.0 * spec.Positions)));
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
    {
        var saved = ctx.get_saved_variables();
        var (xb, yb, owner, band, lse) = (saved[0], saved[1], saved[2], saved[3], saved[4]);
        var spec = (Spec)ctx.get_data("spec");
        var g = Geometry.Of(xb, spec);
        var scale = (float)(gradOutput.to(ScalarType.Float32).item<float>() / (2.0 * spec.Positions));
        var dx = empty(g.Blocks, g.S, g.D, dtype: ScalarType.Float32);
        var dy = empty(g.Blocks, g.S, g.D, dtype: ScalarType.Float32);
        Backward(g, xb, yb, owner, band, lse, scale, dx, dy);
        return [dx, dy, null!, null!];
    }

    private static unsafe void Forward(Geometry g, Tensor xbT, Tensor ybT, Tensor ownerT, Tensor bandT, Tensor lseT, double[] partial)
    {
        var (xb, yb, owner, band, lse) = ((nint)Ptr(xbT), (nint)Ptr(ybT), (nint)Ptr(ownerT), (nint)Ptr(bandT), (nint)Ptr(lseT));
        ForEach(g.Blocks, g.D * g.DoubledRows + 2 * g.Wp, (blk, scratch) =>
        {
            var x = (float*)xb + (long)blk * g.S * g.D;
            var y = (float*)yb + (long)blk * g.S * g.D;
            var b = (float*)band + (long)blk * g.S * g.Wp;
            var lse1 = (float*)lse + (long)blk * g.S;
            var lse2 = (float*)lse + ((long)g.Blocks + blk) * g.S;
            var yt = (float*)scratch;                     // yᵀ with wrap-around [d, DoubledRows]
            var tmp = yt + g.D * g.DoubledRows;           // [Wp]
            for (var c = 0; c < g.DoubledRows; c++)
            {
                var src = y + (long)(c % g.S) * g.D;
                for (var t = 0; t < g.D; t++) yt[(long)t * g.DoubledRows + c] = src[t];
            }
            for (var i = 0; i < g.S; i++) WeightedRowSum(x + (long)i * g.D, 1, g.D, yt + i, g.DoubledRows, g.Wp, b + (long)i * g.Wp);
            var o = (float*)owner + (long)blk * g.S;
            var sum = 0.0;
            for (var i = 0; i < g.S; i++)
            {
                lse1[i] = LogSumExp(b + (long)i * g.Wp, g.K1 + 1, tmp);
                Diagonal(b, i, g, tmp);
                lse2[i] = LogSumExp(tmp, g.K2 + 1, tmp);
                if (o[i] != 0) sum += o[i] * ((double)lse1[i] + lse2[i] - 2.0 * b[(long)i * g.Wp]);
            }
            partial[blk] = sum;
        });
    }

    private static unsafe void Backward(Geometry g, Tensor xbT, Tensor ybT, Tensor ownerT, Tensor bandT, Tensor lseT, float scale, Tensor dxT, Tensor dyT)
    {
        var (xb, yb, owner, band, lse, dxp, dyp) = ((nint)Ptr(xbT), (nint)Ptr(ybT), (nint)Ptr(ownerT), (nint)Ptr(bandT), (nint)Ptr(lseT), (nint)Ptr(dxT), (nint)Ptr(dyT));
        ForEach(g.Blocks, g.S * g.Wp + 2 * g.DoubledRows * g.D + 2 * g.Wp, (blk, scratch) =>
        {
            var x = (float*)xb + (long)blk * g.S * g.D;
            var y = (float*)yb + (long)blk * g.S * g.D;
            var dx = (float*)dxp + (long)blk * g.S * g.D;
            var dy = (float*)dyp + (long)blk * g.S * g.D;
            var b = (float*)band + (long)blk * g.S * g.Wp;
            var lse1 = (float*)lse + (long)blk * g.S;
            var lse2 = (float*)lse + ((long)g.Blocks + blk) * g.S;
            var o = (float*)owner + (long)blk * g.S;
            var dB = (float*)scratch;                     // d loss / d band [S, Wp]
            var yDoubled = dB + g.S * g.Wp;               // rows y_(c mod S), c < DoubledRows
            var xDoubled = yDoubled + g.DoubledRows * g.D; // rows x_((c − K2) mod S)
            var tmp = xDoubled + g.DoubledRows * g.D;     // [Wp]
            new Span<float>(dB, g.S * g.Wp).Clear();
            for (var i = 0; i < g.S; i++)
            {
                if (o[i] == 0) continue;
                var w = scale * o[i];
                // id→text row i: softmax over offsets 0..K1 minus the positive.
                var row = b + (long)i * g.Wp;
                var dRow = dB + (long)i * g.Wp;
                new Span<float>(row, g.K1 + 1).CopyTo(new Span<float>(tmp, g.K1 + 1));
                ScaledSoftmax(tmp, g.K1 + 1, lse1[i], w);
                TensorPrimitives.Add(new ReadOnlySpan<float>(tmp, g.K1 + 1), new ReadOnlySpan<float>(dRow, g.K1 + 1), new Span<float>(dRow, g.K1 + 1));
                dRow[0] -= w;
                // text→id column i: entries B[i − δ, δ], softmax over δ = 0..K2 minus the positive.
                Diagonal(b, i, g, tmp);
                ScaledSoftmax(tmp, g.K2 + 1, lse2[i], w);
                AddToDiagonal(dB, i, g, tmp);
                dRow[0] -= w;
            }
            for (var c = 0; c < g.DoubledRows; c++)
            {
                new Span<float>(y + (long)(c % g.S) * g.D, g.D).CopyTo(new Span<float>(yDoubled + (long)c * g.D, g.D));
                new Span<float>(x + (long)((c - g.K2 + g.S) % g.S) * g.D, g.D).CopyTo(new Span<float>(xDoubled + (long)c * g.D, g.D));
            }
            for (var i = 0; i < g.S; i++)
            {
                // dx_i = Σ_δ dB[i, δ] · y_(i+δ);   dy_j = Σ_δ dB[j − δ, δ] · x_(j−δ) (rows walked backwards).
                WeightedRowSum(dB + (long)i * g.Wp, 1, g.W, yDoubled + (long)i * g.D, g.D, g.D, dx + (long)i * g.D);
                Diagonal(dB, i, g, tmp);
                WeightedRowSum(tmp, 1, g.W, xDoubled + (long)(i + g.K2) * g.D, -g.D, g.D, dy + (long)i * g.D);
            }
        });
    }

    /// <summary>dst[δ] = band[(j − δ) mod S, δ] for δ = 0..K2: the wrapped diagonal through column j — a walk with
    /// stride −(Wp − 1) that jumps by S rows once it passes row 0.</summary>
    private static unsafe void Diagonal(float* band, int j, Geometry g, float* dst)
    {
        var p = band + (long)j * g.Wp;
        var d = 0;
        for (; d <= g.K2 && d <= j; d++, p -= g.Wp - 1) dst[d] = *p;
        for (p += (long)g.S * g.Wp; d <= g.K2; d++, p -= g.Wp - 1) dst[d] = *p;
    }

    /// <summary>band[(j − δ) mod S, δ] += v[δ] for δ = 0..K2 (see <see cref="Diagonal"/>).</summary>
    private static unsafe void AddToDiagonal(float* band, int j, Geometry g, float* v)
    {
        var p = band + (long)j * g.Wp;
        var d = 0;
        for (; d <= g.K2 && d <= j; d++, p -= g.Wp - 1) *p += v[d];
        for (p += (long)g.S * g.Wp; d <= g.K2; d++, p -= g.Wp - 1) *p += v[d];
    }

    /// <summary>v[0..n) ← w · exp(v − lse): the softmax of logits whose log-sum-exp is <paramref name="lse"/>, scaled.</summary>
    private static unsafe void ScaledSoftmax(float* v, int n, float lse, float w)
    {
        var span = new Span<float>(v, n);
        TensorPrimitives.Subtract(span, lse, span);
        TensorPrimitives.Exp(span, span);
        TensorPrimitives.Multiply(span, w, span);
    }

    /// <summary>log Σ exp(v[0..n)), with the maximum subtracted first; <paramref name="tmp"/> may alias v.</summary>
    private static unsafe float LogSumExp(float* v, int n, float* tmp)
    {
        var values = new ReadOnlySpan<float>(v, n);
        var max = TensorPrimitives.Max(values);
        var shifted = new Span<float>(tmp, n);
        TensorPrimitives.Subtract(values, max, shifted);
        TensorPrimitives.Exp(shifted, shifted);
        return max + MathF.Log(TensorPrimitives.Sum(shifted));
    }
}
