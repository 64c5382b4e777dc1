using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using static LSVCR.Modeling.Cpu.CpuKernels;
using static TorchSharp.torch;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace LSVCR.Modeling.Cpu;

/// <summary>
/// The §4 id–text loss after sampling (<see cref="IdTextLoss"/>) as one autograd node with a hand-written forward
/// and backward: the gather of each block's positions, their L2 normalisation, 1/T, the block logits and both
/// cross-entropies.
/// <para>Inside a block of S positions, position i's id→text logits are x_i·y_(i+δ) for offsets δ = 0..K1 and its
/// text→id logits x_(i−δ)·y_i for δ = 0..K2 (mod S; δ = 0 is the positive). Both read the same band
/// B[i, δ] = x_i·y_(i+δ), so only the band is computed (≈ half of the S×S block), from a doubled, transposed copy
/// of the block's y rows; each row and each wrapped diagonal of the band gets a log-sum-exp. The diagonals' sums
/// and softmax gradients are accumulated row by row (row i feeds columns i..i+K2 mod S), and the backward products
/// read the diagonals through strides from a zero-padded copy of the band's gradient: no diagonal is walked.</para>
/// <para>Why: written with libtorch ops this is a batched S×S GEMM, mask adds, two log-softmaxes, diagonals and
/// the backward of each over [blocks, S, S] tensors — ≈ 80 ms per history per step on 2 cores for ≈ 2 GFLOP; and
/// even with the band in a kernel, the libtorch gathers, normalisations and their backward (scatter-adds and a
/// dozen passes of divisions) cost ≈ 40 % of it. Here a block stays in L2 and nothing of S×S size is
/// materialised. No package offers it, hence this kernel.</para>
/// Saved for backward: the inputs, the gathered normalised rows, their norms, the band and both log-sum-exps. The
/// loss is summed per block and then over blocks in a fixed order, so it does not depend on the thread count.
/// </summary>
internal sealed class IdTextKernel : autograd.SingleTensorFunction<IdTextKernel>
{
    public override string Name => nameof(IdTextKernel);

    /// <summary>F.normalize's eps: the norm is clamped to at least this.</summary>
    internal const float NormEps = 1e-12f;

    internal sealed record Spec(int K1, int K2, long Positions, float Temperature);

    /// <param name="id">[M, d] id embeddings (not normalised).</param>
    /// <param name="text">[M, d] text vectors (not normalised).</param>
    /// <param name="index">[blocks, S] int64 rows of id/text in each block slot.</param>
    /// <param name="owner">[blocks, S]: 1 where the slot's loss counts (each position once), else 0.</param>
    /// <param name="k1">id→text negatives (offsets 1..k1).</param>
    /// <param name="k2">text→id negatives (offsets 1..k2 before the position).</param>
    /// <param name="positions">N, the divisor: the loss is Σ owner·(id→text + text→id) / (2N).</param>
    /// <param name="temperature">T: the logits are cos/T.</param>
    public static Tensor Loss(Tensor id, Tensor text, Tensor index, Tensor owner, int k1, int k2, long positions, double temperature)
    {
        if (id.dtype != ScalarType.Float32 || text.dtype != ScalarType.Float32 || id.dim() != 2 || !id.shape.SequenceEqual(text.shape))
            throw new ArgumentException("IdTextKernel needs float32 [M, d] id and text rows of one shape.");
        if (index.dim() != 2 || !index.shape.SequenceEqual(owner.shape))
            throw new ArgumentException("IdTextKernel needs [blocks, S] index and owner.");
        if (k1 < 0 || k2 < k1 || k2 < 1 || k2 >= index.shape[1]) throw new ArgumentException($"IdTextKernel: offsets k1={k1}, k2={k2} do not fit blocks of {index.shape[1]}.");
        if (index.numel() > 0 && (index.min().item<long>() < 0 || index.max().item<long>() >= id.shape[0]))
            throw new ArgumentException($"IdTextKernel: an index is outside the {id.shape[0]} rows.");
        return apply(id.contiguous(), text.contiguous(), index.to(ScalarType.Int32).contiguous(), owner.to(ScalarType.Float32).contiguous(),
            new Spec(k1, k2, positions, (float)temperature));
    }

    private readonly record struct Geometry(int Blocks, int S, int D, int K1, int K2)
    {
        /// <summary>Rows per <see cref="Gemm"/> call: a group's band rows are one rectangle of logits, shifted by
        /// one column per row.</summary>
        public const int Group = 8;
        public int W => K2 + 1;                  // band width: offsets 0..K2 (K2 ≥ K1)
        public int Wp => Pad(W);
        public int Wc => (Wp + Group - 1 + 15) & ~15; // logit columns computed per row group
        public int TCols => S + Wc;              // columns of the wrapped yᵀ the forward reads
        public int Depth => W + Group - 1;       // rows of the wrapped y (x) one backward row group reads
        public int DoubledRows => S + Depth;

        public static Geometry Of(Tensor index, Tensor rows, Spec spec) =>
            new((int)index.shape[0], (int)index.shape[1], (int)rows.shape[1], spec.K1, spec.K2);
    }

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var (id, text, index, owner, spec) = ((Tensor)vars[0], (Tensor)vars[1], (Tensor)vars[2], (Tensor)vars[3], (Spec)vars[4]);
        var g = Geometry.Of(index, id, spec);
        var xb = empty(g.Blocks, g.S, g.D, dtype: ScalarType.Float32);
        var yb = empty(g.Blocks, g.S, g.D, dtype: ScalarType.Float32);
        var norms = empty(2, g.Blocks, g.S, dtype: ScalarType.Float32);
        var band = empty(g.Blocks, g.S, g.Wp, dtype: ScalarType.Float32);
        var lse = empty(2, g.Blocks, g.S, dtype: ScalarType.Float32);
        var partial = new double[g.Blocks];
        Forward(g, new Rows(id, text, index, xb, yb, norms), owner, band, lse, partial, 1f / spec.Temperature);
        var total = 0.0;
        foreach (var p in partial) total += p;
        ctx.save_for_backward([index, owner, xb, yb, norms, band, lse]);
        ctx.save_data("spec", spec);
        ctx.save_data("rows", id.shape[0]);
        return tensor((float)(total / (2.0 * spec.Positions)));
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
    {
        var saved = ctx.get_saved_variables();
        var (index, owner, xb, yb, norms, band, lse) = (saved[0], saved[1], saved[2], saved[3], saved[4], saved[5], saved[6]);
        var spec = (Spec)ctx.get_data("spec");
        var rows = (long)ctx.get_data("rows");
        var g = new Geometry((int)index.shape[0], (int)index.shape[1], (int)xb.shape[2], spec.K1, spec.K2);
        var scale = (float)(gradOutput.to(ScalarType.Float32).item<float>() / (2.0 * spec.Positions));
        var dxb = empty(g.Blocks, g.S, g.D, dtype: ScalarType.Float32);
        var dyb = empty(g.Blocks, g.S, g.D, dtype: ScalarType.Float32);
        Backward(g, xb, yb, owner, band, lse, scale, dxb, dyb);
        var dId = zeros(rows, g.D, dtype: ScalarType.Float32);
        var dText = zeros(rows, g.D, dtype: ScalarType.Float32);
        Unnormalise(g, index, xb, yb, norms, dxb, dyb, dId, dText, 1f / spec.Temperature);
        return [dId, dText, null!, null!, null!];
    }

    /// <summary>The raw rows, the block index and the gathered, normalised block rows (x with 1/T) with their norms.</summary>
    private sealed record Rows(Tensor Id, Tensor Text, Tensor Index, Tensor Xb, Tensor Yb, Tensor Norms);

    /// <summary>Per block: gathers the slots' rows, dst = v / max(‖v‖, eps) · mul (F.normalize, then the 1/T of the
    /// id side), and keeps the clamped norms for the backward.</summary>
    private static unsafe void Gather(Geometry g, Rows r, float invT)
    {
        var (id, text, index, xb, yb, norms) = ((nint)Ptr(r.Id), (nint)Ptr(r.Text), (nint)Int32Ptr(r.Index), (nint)Ptr(r.Xb), (nint)Ptr(r.Yb), (nint)Ptr(r.Norms));
        ForEach(g.Blocks, 0, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (blk, _) =>
        {
            for (var s = 0; s < g.S; s++)
            {
                var slot = (long)blk * g.S + s;
                // The slots' rows are random rows of [M, d]: fetch a few slots ahead so the loads overlap.
                if (s + PrefetchLookahead < g.S)
                {
                    var ahead = (long)((int*)index)[slot + PrefetchLookahead] * g.D;
                    Prefetch((float*)id + ahead, g.D);
                    Prefetch((float*)text + ahead, g.D);
                }
                var row = (long)((int*)index)[slot] * g.D;
                ((float*)norms)[slot] = NormaliseRow((float*)id + row, g.D, invT, (float*)xb + slot * g.D);
                ((float*)norms)[(long)g.Blocks * g.S + slot] = NormaliseRow((float*)text + row, g.D, 1f, (float*)yb + slot * g.D);
            }
        });
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe float NormaliseRow(float* v, int d, float mul, float* dst)
    {
        var span = new ReadOnlySpan<float>(v, d);
        var norm = MathF.Max(MathF.Sqrt(TensorPrimitives.Dot(span, span)), NormEps);
        var output = new Span<float>(dst, d);
        TensorPrimitives.Divide(span, norm, output);
        if (mul != 1f) TensorPrimitives.Multiply(output, mul, output);
        return norm;
    }

    /// <summary>Gradients of the slots' normalised rows back to the raw rows: for u = v / n with n = max(‖v‖, eps),
    /// dv = (du − u (u·du)) / n while ‖v‖ > eps, else du / eps; the id side first undoes the 1/T. A position can sit
    /// in two blocks (the borrowed last block), so the rows are added in block order on one thread: a fixed sum
    /// order, and ≈ 1 ms.</summary>
    private static unsafe void Unnormalise(Geometry g, Tensor indexT, Tensor xbT, Tensor ybT, Tensor normsT, Tensor dxbT, Tensor dybT,
        Tensor dIdT, Tensor dTextT, float invT)
    {
        var (xb, yb, norms, dxb, dyb) = ((nint)Ptr(xbT), (nint)Ptr(ybT), (nint)Ptr(normsT), (nint)Ptr(dxbT), (nint)Ptr(dybT));
        var slots = g.Blocks * g.S;
        ForEach(g.Blocks, 0, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (blk, _) =>
        {
            for (var s = 0; s < g.S; s++)
            {
                var slot = (long)blk * g.S + s;
                // x = u / T holds u = x·T, and du = dx / T.
                NormBackward((float*)xb + slot * g.D, (float*)dxb + slot * g.D, ((float*)norms)[slot], 1f / invT, g.D);
                NormBackward((float*)yb + slot * g.D, (float*)dyb + slot * g.D, ((float*)norms)[slots + slot], 1f, g.D);
            }
        });
        var index = Int32Ptr(indexT);
        var dId = Ptr(dIdT);
        var dText = Ptr(dTextT);
        for (long slot = 0; slot < slots; slot++)
        {
            var row = (long)index[slot] * g.D;
            TensorPrimitives.Add(new ReadOnlySpan<float>(dId + row, g.D), new ReadOnlySpan<float>((float*)dxb + slot * g.D, g.D), new Span<float>(dId + row, g.D));
            TensorPrimitives.Add(new ReadOnlySpan<float>(dText + row, g.D), new ReadOnlySpan<float>((float*)dyb + slot * g.D, g.D), new Span<float>(dText + row, g.D));
        }
    }

    /// <summary>dx (in place) → dv for x = (v / n) / t, with u = x·t and du = dx / t (see <see cref="Unnormalise"/>):
    /// dv = (dx / t − x·t·(x·dx)) / n.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void NormBackward(float* x, float* dx, float norm, float t, int d)
    {
        var grad = new Span<float>(dx, d);
        var xs = new ReadOnlySpan<float>(x, d);
        if (norm > NormEps)
        {
            var dot = TensorPrimitives.Dot(xs, grad);
            TensorPrimitives.Multiply(grad, 1f / t, grad);
            TensorPrimitives.MultiplyAdd(xs, -t * dot, grad, grad);
            TensorPrimitives.Multiply(grad, 1f / norm, grad);
        }
        else TensorPrimitives.Multiply(grad, 1f / (t * NormEps), grad);
    }

    private static unsafe void Forward(Geometry g, Rows r, Tensor ownerT, Tensor bandT, Tensor lseT, double[] partial, float invT)
    {
        Gather(g, r, invT);
        var (xb, yb, owner, band, lse) = ((nint)Ptr(r.Xb), (nint)Ptr(r.Yb), (nint)Ptr(ownerT), (nint)Ptr(bandT), (nint)Ptr(lseT));
        const int G = Geometry.Group;
        ForEach(g.Blocks, g.D * g.TCols + G * g.Wc + Pad(g.TCols) + 2 * g.S, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (blk, scratch) =>
        {
            var x = (float*)xb + (long)blk * g.S * g.D;
            var y = (float*)yb + (long)blk * g.S * g.D;
            var b = (float*)band + (long)blk * g.S * g.Wp;
            var lse1 = (float*)lse + (long)blk * g.S;
            var lse2 = (float*)lse + ((long)g.Blocks + blk) * g.S;
            var yt = (float*)scratch;                     // yᵀ with wrap-around [d, TCols]
            var logits = yt + g.D * g.TCols;              // one row group's rectangle [G, Wc]
            var rows = (int*)(logits + G * g.Wc);         // source row of each yᵀ column
            var colMax = logits + G * g.Wc + Pad(g.TCols); // per column j of the text→id direction [S]
            var colSum = colMax + g.S;                    // Σ_δ exp(B[j − δ, δ] − colMax[j]) [S]
            for (var c = 0; c < g.TCols; c++) rows[c] = c % g.S * g.D;
            GatherColumns(y, rows, g.TCols, g.D, yt, g.TCols);
            // Rows i0..i0+G−1 read yᵀ columns i0..i0+G−1+Wp: one [G, Wc] product, then row r's band is its
            // columns r..r+Wp.
            for (var i0 = 0; i0 < g.S; i0 += G)
            {
                var n = Math.Min(G, g.S - i0);
                GemmRowBlock(x + (long)i0 * g.D, g.D, 1, yt + i0, g.TCols, logits, g.Wc, n, g.Wc, g.D);
                for (var r = 0; r < n; r++)
                    new Span<float>(logits + r * g.Wc + r, g.Wp).CopyTo(new Span<float>(b + (long)(i0 + r) * g.Wp, g.Wp));
            }
            var o = (float*)owner + (long)blk * g.S;
            // The text→id log-sum-exps run down the wrapped diagonals B[j − δ, δ]; they are accumulated row by row
            // instead (row i adds to columns i..i+K2 mod S, two contiguous runs), so no strided walk is needed:
            // first the column maxima, then the shifted exponentials.
            new Span<float>(colMax, g.S).Fill(float.NegativeInfinity);
            new Span<float>(colSum, g.S).Clear();
            // Row i's offsets δ = 0..K2 are columns i..i+K2 mod S: one run of `first`, then the wrapped rest.
            for (var i = 0; i < g.S; i++)
            {
                var row = b + (long)i * g.Wp;
                var first = Math.Min(g.K2 + 1, g.S - i);
                MaxInto(colMax + i, row, first);
                MaxInto(colMax, row + first, g.K2 + 1 - first);
            }
            for (var i = 0; i < g.S; i++)
            {
                var row = b + (long)i * g.Wp;
                var first = Math.Min(g.K2 + 1, g.S - i);
                lse1[i] = LogSumExp(row, g.K1 + 1);
                AddExp(colSum + i, row, colMax + i, first);
                AddExp(colSum, row + first, colMax, g.K2 + 1 - first);
            }
            var sum = 0.0;
            for (var i = 0; i < g.S; i++)
            {
                lse2[i] = colMax[i] + MathF.Log(colSum[i]);
                if (o[i] != 0) sum += o[i] * ((double)lse1[i] + lse2[i] - 2.0 * b[(long)i * g.Wp]);
            }
            partial[blk] = sum;
        });
    }

    private static unsafe void Backward(Geometry g, Tensor xbT, Tensor ybT, Tensor ownerT, Tensor bandT, Tensor lseT, float scale, Tensor dxT, Tensor dyT)
    {
        var (xb, yb, owner, band, lse, dxp, dyp) = ((nint)Ptr(xbT), (nint)Ptr(ybT), (nint)Ptr(ownerT), (nint)Ptr(bandT), (nint)Ptr(lseT), (nint)Ptr(dxT), (nint)Ptr(dyT));
        const int G = Geometry.Group;
        // dB rows live in a padded layout: K2 leading rows (copies of the last K2, the wrap-around), S rows, Group
        // trailing zero rows, each row Pad zeros | K2 + 1 band gradients | zeros. Both backward products then read
        // their [Group, Depth] operands straight from it through strides — the band rows shifted one column per row
        // for dx, the wrapped diagonals for dy — with the padding supplying the zeros outside the band.
        const int Pad = G - 1;
        var wr = g.K2 + 1 + 2 * Pad;
        var paddedRows = g.K2 + g.S + G;
        ForEach(g.Blocks, paddedRows * wr + 2 * g.DoubledRows * g.D + 2 * (g.S + g.Wp), [MethodImpl(MethodImplOptions.AggressiveOptimization)] (blk, scratch) =>
        {
            var x = (float*)xb + (long)blk * g.S * g.D;
            var y = (float*)yb + (long)blk * g.S * g.D;
            var dx = (float*)dxp + (long)blk * g.S * g.D;
            var dy = (float*)dyp + (long)blk * g.S * g.D;
            var b = (float*)band + (long)blk * g.S * g.Wp;
            var lse1 = (float*)lse + (long)blk * g.S;
            var lse2 = (float*)lse + ((long)g.Blocks + blk) * g.S;
            var o = (float*)owner + (long)blk * g.S;
            var dB = (float*)scratch;                     // padded d loss / d band [K2 + S + G, wr]
            var yDoubled = dB + (long)paddedRows * wr;    // rows y_(c mod S), c < DoubledRows
            var xDoubled = yDoubled + g.DoubledRows * g.D; // rows x_((c − K2) mod S)
            var colWeight = xDoubled + g.DoubledRows * g.D; // scale·owner of column (c mod S), c < S + Wp
            var colLse = colWeight + g.S + g.Wp;          // lse2 of column (c mod S)
            for (var c = 0; c < g.S + g.Wp; c++)
            {
                colWeight[c] = scale * o[c % g.S];
                colLse[c] = lse2[c % g.S];
            }
            for (var i = 0; i < g.S; i++)
            {
                var row = b + (long)i * g.Wp;
                var padded = dB + (long)(g.K2 + i) * wr;
                var dRow = padded + Pad;
                new Span<float>(padded, Pad).Clear();
                new Span<float>(dRow + g.K2 + 1, Pad).Clear();
                // text→id: entry B[i, δ] is offset δ of column i + δ, whose softmax it joins with that column's
                // weight (row by row, so no walk down the wrapped diagonals).
                WeightedExp(row, colLse + i, colWeight + i, g.K2 + 1, dRow);
                if (o[i] == 0) continue;
                var w = scale * o[i];
                // id→text row i: softmax over offsets 0..K1; both directions' positive is B[i, 0].
                ScaledSoftmax(row, g.K1 + 1, lse1[i], w, dRow, accumulate: true);
                dRow[0] -= 2 * w;
            }
            new Span<float>(dB + (long)g.S * wr, g.K2 * wr).CopyTo(new Span<float>(dB, g.K2 * wr)); // rows S−K2..S−1
            new Span<float>(dB + (long)(g.K2 + g.S) * wr, G * wr).Clear();
            for (var c = 0; c < g.DoubledRows; c++)
            {
                new Span<float>(y + (long)(c % g.S) * g.D, g.D).CopyTo(new Span<float>(yDoubled + (long)c * g.D, g.D));
                new Span<float>(x + (long)((c - g.K2 + g.S) % g.S) * g.D, g.D).CopyTo(new Span<float>(xDoubled + (long)c * g.D, g.D));
            }
            // dx_i = Σ_δ dB[i, δ] · y_(i+δ): A[r, c] = dB[i0 + r, c − r] against y rows i0..i0+Depth.
            // dy_j = Σ_δ dB[j − δ, δ] · x_(j−δ): A[r, c] = dB[j0 − K2 + c, K2 + r − c] against xDoubled rows j0..j0+Depth.
            for (var i0 = 0; i0 < g.S; i0 += G)
            {
                var n = Math.Min(G, g.S - i0);
                GemmRowBlock(dB + (long)(g.K2 + i0) * wr + Pad, wr - 1, 1, yDoubled + (long)i0 * g.D, g.D, dx + (long)i0 * g.D, g.D, n, g.D, g.Depth);
                GemmRowBlock(dB + (long)i0 * wr + Pad + g.K2, 1, wr - 1, xDoubled + (long)i0 * g.D, g.D, dy + (long)i0 * g.D, g.D, n, g.D, g.Depth);
            }
        });
    }

    /// <summary>dst[t] = w[t] · exp(src[t] − lse[t]).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void WeightedExp(float* src, float* lse, float* w, int n, float* dst)
    {
        var t = 0;
        if (Avx512F.IsSupported)
            for (; t + 16 <= n; t += 16) (Vector512.Load(w + t) * Exp(Vector512.Load(src + t) - Vector512.Load(lse + t))).Store(dst + t);
        for (; t < n; t++) dst[t] = w[t] * MathF.Exp(src[t] - lse[t]);
    }
}
