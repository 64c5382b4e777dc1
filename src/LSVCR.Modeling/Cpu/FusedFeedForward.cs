using System.Runtime.CompilerServices;
using TorchSharp.Modules;
using static LSVCR.Modeling.Cpu.CpuKernels;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LSVCR.Modeling.Cpu;

/// <summary>
/// The whole feed-forward sublayer of MODEL.md §2.1, LayerNorm(Dropout(linear_2(GELU(linear_1(x)))) + x), for
/// training as one autograd node that works through the rows in blocks of <see cref="BlockRows"/>: both GEMMs of a
/// block (<see cref="CpuKernels.Gemm"/>), GELU, bias, dropout, residual and LayerNorm run while the block's
/// [rows, inner] activation sits in L2. The forward also writes the activation G and the GELU slope of every row, so
/// the backward reads them instead of recomputing linear_1 and the GELU.
/// <para>Why: as separate nodes the [B·L, inner] pre-activation and activation (26 MB each at batch 512) were written
/// and re-read by every pass and every MKL call (each of which also packs its operands again), forward and backward;
/// the sublayer ran at a quarter of the FMA peak. Keeping G and the slope (2 × 13 MB per 256-example slice) costs
/// one streaming write and read of each; recomputing them cost a GEMM and an erf pass per block, more (measured,
/// interleaved on one thread: forward+backward median 37.8 → 35.5 ms at 12,800 rows; full bench step −15 ms median
/// paired difference). No package offers a fused transformer FFN for TorchSharp, hence this kernel.</para>
/// <para>Same arithmetic as the written-out modules: erf GELU (<see cref="Gelu"/>), dropout keep mask from
/// <see cref="Dropout.WriteKeep"/> with one seed drawn where <c>Dropout.Apply</c> would draw it, LayerNorm with the
/// biased variance. Parameter gradients are summed per fixed chunk of <see cref="ChunkRows"/> rows and then over the
/// chunks in order, so they do not depend on the thread count.</para>
/// Saved for backward: x, x̂ = (z − mean)·rstd, rstd, G = GELU(x·W1ᵀ + b1) (packed per block), GELU'(x·W1ᵀ + b1), W1 and W2 (packed), γ and the
/// dropout seed.
/// </summary>
internal sealed class FusedFeedForward : autograd.SingleTensorFunction<FusedFeedForward>
{
    public override string Name => nameof(FusedFeedForward);

    private sealed record Spec(ulong Seed, double P, float Eps);

    /// <summary>Rows of one GEMM block: x, the [rows, inner] activation and its gradient stay in L2; a multiple of the
    /// 6-row tile (64 rows left a 4-row tile per panel, ≈ 25 % slower at depth 256).</summary>
    internal const int BlockRows = 96;

    /// <summary>Rows of one work item, the unit of the parameter-gradient partial sums (a multiple of BlockRows, so
    /// every block starts on a whole word of the dropout generator).</summary>
    internal const int ChunkRows = 384;

    /// <summary>LayerNorm(Dropout(linear2(GELU(linear1(x)))) + x); outside training (or for other dtypes) the libtorch
    /// modules, where dropout is the identity.</summary>
    public static Tensor Apply(Tensor x, Linear linear1, Linear linear2, LayerNorm norm, double p, double eps, bool training)
    {
        if (!training || x.dtype != ScalarType.Float32 || p >= 1 || linear1.bias is null || linear2.bias is null)
            return norm.forward(Dropout.Apply(linear2.forward(F.gelu(linear1.forward(x))), p, training).add(x));
        var d = x.shape[^1];
        // The kernels read every parameter through raw pointers at these sizes.
        if (linear1.weight!.shape[1] != d || linear2.weight!.shape[0] != d || linear2.weight.shape[1] != linear1.weight.shape[0]
            || norm.weight!.shape[0] != d || norm.bias!.shape[0] != d)
            throw new ArgumentException($"FusedFeedForward: x [..., {d}], linear_1 [{string.Join(", ", linear1.weight.shape)}], linear_2 [{string.Join(", ", linear2.weight!.shape)}] and the norm [{norm.weight.shape[0]}] do not chain back to width {d}.");
        var seed = p > 0 ? Dropout.NextSeed() : 0UL;
        var flat = x.reshape(-1, d).contiguous();
        var y = apply(flat, linear1.weight, linear1.bias, linear2.weight, linear2.bias, norm.weight!, norm.bias!, new Spec(seed, p, (float)eps));
        return y.view(x.shape);
    }

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var (x, w1, b1, w2, b2, gamma, beta, spec) = ((Tensor)vars[0], (Tensor)vars[1], (Tensor)vars[2], (Tensor)vars[3],
            (Tensor)vars[4], (Tensor)vars[5], (Tensor)vars[6], (Spec)vars[7]);
        var w = Weights.Of(w1, b1, w2, b2);
        var y = empty_like(x);
        var xhat = empty_like(x);
        var rstd = empty(x.shape[0], dtype: ScalarType.Float32);
        var g = empty(x.shape[0], PanelsWidth(w.Inner), dtype: ScalarType.Float32);
        var slope = empty(x.shape[0], w.Inner, dtype: ScalarType.Float32);
        Kernels.Forward(x, w, gamma.detach().contiguous(), beta.detach().contiguous(), y, xhat, rstd, g, slope, spec);
        ctx.save_for_backward([x, xhat, rstd, w.W1, w.W2Packed, gamma, g, slope]);
        ctx.save_data("spec", spec);
        return y;
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
    {
        var s = ctx.get_saved_variables();
        var spec = (Spec)ctx.get_data("spec");
        var dy = gradOutput.to(ScalarType.Float32).contiguous();
        var dx = empty_like(s[0]);
        var g = Kernels.Backward(dy, s[0], s[1], s[2], s[6], s[7], s[3], s[4], s[5].detach().contiguous(), dx, spec);
        return [dx, g.W1, g.B1, g.W2, g.B2, g.Gamma, g.Beta, null!];
    }

    /// <summary>Floats per row of the kept activation G: whole 64-column panels.</summary>
    private static int PanelsWidth(int inner) => PackedSize(1, inner);

    /// <summary>Detached contiguous weights in the layouts the GEMMs read: W1ᵀ [d, inner] and W2 [d, inner] as
    /// <see cref="CpuKernels.Pack"/>ed panels (their rows are `inner` floats apart), W2ᵀ [inner, d] and W1 as they are.</summary>
    private sealed record Weights(Tensor W1, Tensor W1TPacked, Tensor B1, Tensor W2Packed, Tensor W2T, Tensor B2)
    {
        public static unsafe Weights Of(Tensor w1, Tensor b1, Tensor w2, Tensor b2)
        {
            var (a, b) = (w1.detach().contiguous(), w2.detach().contiguous());
            var (inner, d) = ((int)a.shape[0], (int)a.shape[1]);
            using var at = a.t().contiguous();
            var w1tPacked = empty(PackedSize(d, inner), dtype: ScalarType.Float32);
            Pack(Ptr(at), inner, d, inner, Ptr(w1tPacked));
            var w2Packed = empty(PackedSize(d, inner), dtype: ScalarType.Float32);
            Pack(Ptr(b), inner, d, inner, Ptr(w2Packed));
            return new Weights(a, w1tPacked, b1.detach().contiguous(), w2Packed, b.t().contiguous(), b2.detach().contiguous());
        }

        public int Inner => (int)W1.shape[0];
    }

    private sealed record Gradients(Tensor W1, Tensor B1, Tensor W2, Tensor B2, Tensor Gamma, Tensor Beta);

    private static unsafe class Kernels
    {
        /// <summary>y, x̂ and rstd of the sublayer, and for the backward the activation G = GELU(x·W1ᵀ + b1) and
        /// GELU'(x·W1ᵀ + b1) of every row ([rows, inner]). G is kept as the B operand of the backward's dW2 product
        /// reads it: each block of rows as <see cref="CpuKernels.Pack"/>ed 64-column panels, written by the GELU pass
        /// (the forward's own product reads G row-major from the block's scratch). Packing it in the backward instead
        /// was a separate copy pass of every G (≈ 2 % of a training step).</summary>
        public static void Forward(Tensor xT, Weights wt, Tensor gammaT, Tensor betaT, Tensor yT, Tensor xhatT, Tensor rstdT,
            Tensor gT, Tensor slopeT, Spec spec)
        {
            var (rows, d, inner) = ((int)xT.shape[0], (int)xT.shape[1], wt.Inner);
            var (x, w1t, b1, w2t, b2) = ((nint)Ptr(xT), (nint)Ptr(wt.W1TPacked), (nint)Ptr(wt.B1), (nint)Ptr(wt.W2T), (nint)Ptr(wt.B2));
            var (gamma, beta, y, xhat, rstd) = ((nint)Ptr(gammaT), (nint)Ptr(betaT), (nint)Ptr(yT), (nint)Ptr(xhatT), (nint)Ptr(rstdT));
            var (gAll, slopeAll) = ((nint)Ptr(gT), (nint)Ptr(slopeT));
            var panelsWidth = PanelsWidth(inner);
            ForEach((rows + ChunkRows - 1) / ChunkRows, BlockRows * (inner + d), [MethodImpl(MethodImplOptions.AggressiveOptimization)] (c, scratch) =>
            {
                var h = (float*)scratch;                    // [block, inner] x·W1ᵀ, then G
                var z = h + (long)BlockRows * inner;         // [block, d]
                for (var r0 = c * ChunkRows; r0 < Math.Min(rows, (c + 1) * ChunkRows); r0 += BlockRows)
                {
                    var n = Math.Min(BlockRows, rows - r0);
                    var xb = (float*)x + (long)r0 * d;
                    var panels = (float*)gAll + (long)r0 * panelsWidth; // the block's G as n-deep panels
                    var slope = (float*)slopeAll + (long)r0 * inner;
                    GemmPacked(xb, d, 1, (float*)w1t, d, h, inner, n, inner, d);
                    for (var i = 0; i < n; i++)
                    {
                        var hi = h + (long)i * inner;
                        Gelu.ValueAndSlopeRow(hi, (float*)b1, hi, slope + (long)i * inner, inner, panels + (long)i * PanelWidth, (long)n * PanelWidth);
                    }
                    if (panelsWidth > inner) // the last panel's pad columns, never read by a product but kept finite
                        for (var i = 0; i < n; i++)
                            new Span<float>(panels + (long)(panelsWidth / PanelWidth - 1) * n * PanelWidth + (long)i * PanelWidth + inner % PanelWidth,
                                panelsWidth - inner).Clear();
                    Gemm(h, inner, 1, (float*)w2t, d, z, d, n, d, inner, bias: (float*)b2);
                    LayerNormRows.ResidualForward(z, r0, n, d, (float*)x, spec.Seed, spec.P, spec.Eps, (float*)gamma, (float*)beta,
                        (float*)xhat, (float*)rstd, (float*)y);
                }
            });
        }

        /// <summary>Per block: LayerNorm backward into dx (the residual path), dropout, then dW2 += dYᵀ·G,
        /// dG = dY·W2, dH = dG·GELU'(H), dW1 += dHᵀ·x and dx += dH·W1, with G and GELU'(H) as the forward left them;
        /// the weights are W1 [inner, d] and W2 packed (<see cref="Weights"/>), all the backward reads of them.</summary>
        public static Gradients Backward(Tensor dOutT, Tensor xT, Tensor xhatT, Tensor rstdT, Tensor gT, Tensor slopeT, Tensor w1T,
            Tensor w2PackedT, Tensor gammaT, Tensor dxT, Spec spec)
        {
            var (rows, d, inner) = ((int)xT.shape[0], (int)xT.shape[1], (int)w1T.shape[0]);
            var (dOut, x, xhat, rstd, gamma, dx) = ((nint)Ptr(dOutT), (nint)Ptr(xT), (nint)Ptr(xhatT), (nint)Ptr(rstdT), (nint)Ptr(gammaT), (nint)Ptr(dxT));
            var (w1, w2, gAll, slopeAll) = ((nint)Ptr(w1T), (nint)Ptr(w2PackedT), (nint)Ptr(gT), (nint)Ptr(slopeT));
            var chunks = (rows + ChunkRows - 1) / ChunkRows;
            // One partial row per chunk: dW1 [inner, d] | dW2 [d, inner] | db1 [inner] | db2 | dγ | dβ [d].
            var width = 2 * inner * d + inner + 3 * d;
            using var partialT = zeros(chunks, width, dtype: ScalarType.Float32);
            var partial = (nint)Ptr(partialT);
            var panelsWidth = PanelsWidth(inner);
            ForEach(chunks, BlockRows * (inner + d), [MethodImpl(MethodImplOptions.AggressiveOptimization)] (c, scratch) =>
            {
                var dW1 = (float*)partial + (long)c * width;
                var dW2 = dW1 + (long)inner * d;
                var dB1 = dW2 + (long)inner * d;
                var dB2 = dB1 + inner;
                var dGamma = dB2 + d;
                var dBeta = dGamma + d;
                var h = (float*)scratch;                    // [block, inner] dG, then dH
                var dz = h + (long)BlockRows * inner;        // [block, d] gradient of linear_2's output
                for (var r0 = c * ChunkRows; r0 < Math.Min(rows, (c + 1) * ChunkRows); r0 += BlockRows)
                {
                    var n = Math.Min(BlockRows, rows - r0);
                    var xb = (float*)x + (long)r0 * d;
                    var dxb = (float*)dx + (long)r0 * d;
                    var slope = (float*)slopeAll + (long)r0 * inner;
                    LayerNormRows.ResidualBackward((float*)dOut, r0, n, d, (float*)xhat, (float*)rstd, (float*)gamma, spec.Seed, spec.P,
                        (float*)dx, dz, dGamma, dBeta, dB2);

                    var g = (float*)gAll + (long)r0 * panelsWidth; // the block's G as the forward packed it
                    GemmPacked(dz, 1, d, g, n, dW2, inner, d, inner, n, accumulate: true);
                    GemmPacked(dz, d, 1, (float*)w2, d, h, inner, n, inner, d);
                    for (var i = 0; i < n; i++) Gelu.SlopeBackwardRow(h + (long)i * inner, slope + (long)i * inner, h + (long)i * inner, dB1, inner);
                    Gemm(h, 1, inner, xb, d, dW1, d, inner, d, n, accumulate: true);
                    Gemm(h, inner, 1, (float*)w1, d, dxb, d, n, d, inner, accumulate: true);
                }
            });
            using var sums = SumChunks(partialT);
            var bias = 2L * inner * d;
            return new Gradients(Slice(sums, 0, inner, d), Slice(sums, bias, inner), Slice(sums, (long)inner * d, d, inner),
                Slice(sums, bias + inner, d), Slice(sums, bias + inner + d, d), Slice(sums, bias + inner + 2 * d, d));
        }
    }
}
