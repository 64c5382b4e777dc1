using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using static LSVCR.Modeling.Cpu.CpuKernels;
using static TorchSharp.torch;

namespace LSVCR.Modeling.Cpu;

/// <summary>
/// rec_att of MODEL.md §2 for training — a = Linear₂(GELU(LayerNorm(Dropout(Linear₁(h))))) per position,
/// w = softmax(a + mask) over the positions, out = Σ w·h — as one autograd node that works through a few examples
/// at a time: both linears, dropout, LayerNorm, GELU, the softmax and the weighted sum run while the examples'
/// [rows, 2d] activations sit in L2, and the backward recomputes them from h instead of keeping them.
/// <para>Why: as modules this head is a dozen libtorch kernels over [B, L, 2d] tensors forward and as many backward
/// (each a pass through memory, LayerNorm's and GELU's backward two) for ≈ 0.8 GFLOP. Measured on one thread, a
/// 256-example slice of the bench step, interleaved: forward+backward 30–33 ms as modules, 19–26 ms fused; the GELU
/// and the four GEMMs are most of what is left. No package offers it for TorchSharp, hence this kernel.</para>
/// <para>Same arithmetic as the modules up to float rounding: the dropout mask is <see cref="Dropout.WriteKeep"/>'s
/// stream over the [B, L, 2d] activation with one seed drawn where <c>Dropout.Apply</c> would draw it, LayerNorm
/// with the biased variance (<see cref="LayerNormRows"/>), the erf GELU of <see cref="Gelu"/>, the softmax with its
/// maximum subtracted. Parameter gradients are summed per fixed chunk of <see cref="ChunkExamples"/> examples and
/// then over the chunks in order, so they do not depend on the thread count.</para>
/// Saved for backward: h, the weights, the softmax weights w [B, L] and the dropout seed.
/// </summary>
internal sealed class FusedAdditiveAttention : autograd.SingleTensorFunction<FusedAdditiveAttention>
{
    public override string Name => nameof(FusedAdditiveAttention);

    /// <summary>Examples per work item: their [rows, 2d] scratch (six tensors) stays in L2.</summary>
    internal const int ChunkExamples = 4;

    private sealed record Spec(ulong Seed, double P, float Eps);

    /// <summary>The pooled [B, d] of h [B, L, d] under the additive mask [B, L]; null where the kernel does not apply
    /// (other dtypes, dropout 1, missing biases, widths that do not chain), so the caller runs the modules.</summary>
    public static Tensor? TryApply(Tensor h, Tensor mask, TorchSharp.Modules.Linear linear1, TorchSharp.Modules.LayerNorm norm,
        TorchSharp.Modules.Linear linear2, double p, double eps)
    {
        if (h.dtype != ScalarType.Float32 || mask.dtype != ScalarType.Float32 || h.dim() != 3 || p >= 1
            || linear1.bias is null || linear2.bias is null || norm.weight is null || norm.bias is null)
            return null;
        var (d, inner) = (h.shape[2], linear1.weight!.shape[0]);
        if (linear1.weight.shape[1] != d || linear2.weight!.shape[0] != 1 || linear2.weight.shape[1] != inner
            || norm.weight.shape[0] != inner || !mask.shape.SequenceEqual(new[] { h.shape[0], h.shape[1] }))
            return null;
        var seed = p > 0 ? Dropout.NextSeed() : 0UL;
        return apply(h.contiguous(), linear1.weight, linear1.bias, norm.weight, norm.bias, linear2.weight, linear2.bias,
            mask.contiguous(), new Spec(seed, p, (float)eps));
    }

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var h = (Tensor)vars[0];
        var w = Weights.Of((Tensor)vars[1], (Tensor)vars[2], (Tensor)vars[3], (Tensor)vars[4], (Tensor)vars[5], (Tensor)vars[6]);
        var (mask, spec) = ((Tensor)vars[7], (Spec)vars[8]);
        var output = empty(h.shape[0], h.shape[2], dtype: ScalarType.Float32);
        var softmax = empty(h.shape[0], h.shape[1], dtype: ScalarType.Float32);
        Kernels.Forward(h, w, mask, output, softmax, spec);
        ctx.save_for_backward([h, w.W1, w.W1TPacked, w.B1, w.Gamma, w.Beta, w.W2, w.B2, softmax]);
        ctx.save_data("spec", spec);
        return output;
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
    {
        var s = ctx.get_saved_variables();
        var w = new Weights(s[1], s[2], s[3], s[4], s[5], s[6], s[7]);
        var spec = (Spec)ctx.get_data("spec");
        var dOut = gradOutput.to(ScalarType.Float32).contiguous();
        var dh = empty_like(s[0]);
        var g = Kernels.Backward(dOut, s[0], w, s[8], dh, spec);
        return [dh, g.W1, g.B1, g.Gamma, g.Beta, g.W2.view(1, -1), g.B2, null!, null!];
    }

    /// <summary>Detached contiguous weights: W1 [2d, d] for dh, W1ᵀ packed (<see cref="CpuKernels.Pack"/>) for the
    /// forward product, the rest as vectors (W2 [2d], b2 [1]).</summary>
    private sealed record Weights(Tensor W1, Tensor W1TPacked, Tensor B1, Tensor Gamma, Tensor Beta, Tensor W2, Tensor B2)
    {
        public static unsafe Weights Of(Tensor w1, Tensor b1, Tensor gamma, Tensor beta, Tensor w2, Tensor b2)
        {
            var a = w1.detach().contiguous();
            var (inner, d) = ((int)a.shape[0], (int)a.shape[1]);
            using var at = a.t().contiguous();
            var packed = empty(PackedSize(d, inner), dtype: ScalarType.Float32);
            Pack(Ptr(at), inner, d, inner, Ptr(packed));
            return new Weights(a, packed, b1.detach().contiguous(), gamma.detach().contiguous(), beta.detach().contiguous(),
                w2.detach().reshape(-1).contiguous(), b2.detach().contiguous());
        }

        public int Inner => (int)W1.shape[0];
    }

    private sealed record Gradients(Tensor W1, Tensor B1, Tensor Gamma, Tensor Beta, Tensor W2, Tensor B2);

    private static unsafe class Kernels
    {
        /// <summary>Pointers and sizes shared by both passes.</summary>
        private readonly record struct Shape(int Batch, int Length, int D, int Inner)
        {
            public int Chunks => (Batch + ChunkExamples - 1) / ChunkExamples;
            public int ChunkRows => ChunkExamples * Length;
            public static Shape Of(Tensor h, Weights w) => new((int)h.shape[0], (int)h.shape[1], (int)h.shape[2], w.Inner);
        }

        /// <summary>Rows [r0, r0 + n) of the head's hidden layer, recomputed in both passes: z = Dropout(h·W1ᵀ + b1),
        /// x̂ and rstd of LayerNorm(z), y = x̂·γ + β and g = GELU(y) (with GELU'(y) into <paramref name="slope"/>
        /// when given).</summary>
        private static void Hidden(Shape sh, float* h, float* w1t, float* b1, float* gamma, float* beta, Spec spec, long r0, int n,
            float* z, float* xhat, float* rstd, float* y, float* g, float* slope)
        {
            var inner = sh.Inner;
            GemmPacked(h + r0 * sh.D, sh.D, 1, w1t, sh.D, z, inner, n, inner, sh.D, bias: b1);
            if (spec.P > 0) Dropout.WriteKeep(spec.Seed, r0 * inner >> 2, (long)n * inner, Dropout.Threshold(spec.P), Dropout.KeepScale(spec.P), z, z);
            for (var i = 0; i < n; i++)
            {
                var at = (long)i * inner;
                rstd[i] = LayerNormRows.Normalise(z + at, inner, spec.Eps, xhat + at, gamma, beta, y + at);
                if (slope != null) Gelu.ValueAndSlopeRow(y + at, null, g + at, slope + at, inner);
                else Gelu.ForwardRow(y + at, null, g + at, inner);
            }
        }

        /// <summary>Floats of one work item's scratch: six [rows, 2d] tensors, and rstd and the scores per row.</summary>
        private static int ScratchFloats(Shape sh) => 6 * sh.ChunkRows * sh.Inner + 2 * sh.ChunkRows;

        public static void Forward(Tensor hT, Weights wt, Tensor maskT, Tensor outT, Tensor softmaxT, Spec spec)
        {
            var sh = Shape.Of(hT, wt);
            var (h, w1t, b1, gamma, beta, w2) = ((nint)Ptr(hT), (nint)Ptr(wt.W1TPacked), (nint)Ptr(wt.B1), (nint)Ptr(wt.Gamma), (nint)Ptr(wt.Beta), (nint)Ptr(wt.W2));
            var (mask, output, softmax) = ((nint)Ptr(maskT), (nint)Ptr(outT), (nint)Ptr(softmaxT));
            var b2 = wt.B2.item<float>();
            ForEach(sh.Chunks, ScratchFloats(sh), [MethodImpl(MethodImplOptions.AggressiveOptimization)] (c, scratch) =>
            {
                var (inner, l, rows) = (sh.Inner, sh.Length, sh.ChunkRows);
                var z = (float*)scratch;
                var xhat = z + (long)rows * inner;
                var y = xhat + (long)rows * inner;
                var g = y + (long)rows * inner;
                var rstd = g + 3L * rows * inner;          // (two [rows, 2d] tensors are backward-only)
                var score = rstd + rows;
                var e0 = c * ChunkExamples;
                var examples = Math.Min(ChunkExamples, sh.Batch - e0);
                var n = examples * l;
                Hidden(sh, (float*)h, (float*)w1t, (float*)b1, (float*)gamma, (float*)beta, spec, (long)e0 * l, n, z, xhat, rstd, y, g, null);
                for (var i = 0; i < n; i++) score[i] = Dot(g + (long)i * inner, (float*)w2, inner) + b2;
                for (var e = 0; e < examples; e++)
                {
                    var b = e0 + e;
                    var weights = (float*)softmax + (long)b * l;
                    Softmax(score + e * l, (float*)mask + (long)b * l, l, weights);
                    WeightedRowSum(weights, 1, l, (float*)h + (long)b * l * sh.D, sh.D, sh.D, (float*)output + (long)b * sh.D);
                }
            });
        }

        /// <summary>One row of a = g·W2 + b2 backward and GELU's: dW2 += a'·g, dy = (a'·W2) ⊙ GELU'(y).</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void ScoreBackwardRow(float da, float* g, float* w2, float* slope, int n, float* dW2, float* dy)
        {
            var j = 0;
            if (Vector512.IsHardwareAccelerated)
            {
                var a = Vector512.Create(da);
                for (; j + 16 <= n; j += 16)
                {
                    Vector512.FusedMultiplyAdd(a, Vector512.Load(g + j), Vector512.Load(dW2 + j)).Store(dW2 + j);
                    (a * Vector512.Load(w2 + j) * Vector512.Load(slope + j)).Store(dy + j);
                }
            }
            for (; j < n; j++)
            {
                dW2[j] = MathF.FusedMultiplyAdd(da, g[j], dW2[j]);
                dy[j] = da * w2[j] * slope[j];
            }
        }

        /// <summary>w = softmax(a + mask) over one example's positions, the row maximum subtracted first.</summary>
        private static void Softmax(float* a, float* mask, int l, float* w)
        {
            var max = float.NegativeInfinity;
            for (var i = 0; i < l; i++)
            {
                w[i] = a[i] + mask[i];
                max = MathF.Max(max, w[i]);
            }
            var sum = 0f;
            for (var i = 0; i < l; i++) sum += w[i] = MathF.Exp(w[i] - max);
            var inv = 1f / sum;
            for (var i = 0; i < l; i++) w[i] *= inv;
        }

        /// <summary>Per chunk: dh = w·dOut (the weighted sum) plus, through the softmax, the scores' gradient back
        /// down the head: dW2, db2 from g; dy = da·W2 ⊙ GELU'(y); LayerNorm backward (dγ, dβ); dropout; db1,
        /// dW1 += dzᵀ·h and dh += dz·W1 — with the hidden layer recomputed.</summary>
        public static Gradients Backward(Tensor dOutT, Tensor hT, Weights wt, Tensor softmaxT, Tensor dhT, Spec spec)
        {
            var sh = Shape.Of(hT, wt);
            var (h, w1, w1t, b1, gamma, beta, w2) = ((nint)Ptr(hT), (nint)Ptr(wt.W1), (nint)Ptr(wt.W1TPacked), (nint)Ptr(wt.B1), (nint)Ptr(wt.Gamma), (nint)Ptr(wt.Beta), (nint)Ptr(wt.W2));
            var (dOut, softmax, dh) = ((nint)Ptr(dOutT), (nint)Ptr(softmaxT), (nint)Ptr(dhT));
            var (inner, d) = (sh.Inner, sh.D);
            // One partial row per chunk: dW1 [2d, d] | db1 | dγ | dβ | dW2 [2d] | db2.
            var width = inner * d + 4 * inner + 1;
            using var partialT = zeros(sh.Chunks, width, dtype: ScalarType.Float32);
            var partial = (nint)Ptr(partialT);
            ForEach(sh.Chunks, ScratchFloats(sh), [MethodImpl(MethodImplOptions.AggressiveOptimization)] (c, scratch) =>
            {
                var (l, rows) = (sh.Length, sh.ChunkRows);
                var dW1 = (float*)partial + (long)c * width;
                var dB1 = dW1 + (long)inner * d;
                var dGamma = dB1 + inner;
                var dBeta = dGamma + inner;
                var dW2 = dBeta + inner;
                var dB2 = dW2 + inner;
                var z = (float*)scratch;                   // z, then dz (through the dropout)
                var xhat = z + (long)rows * inner;
                var y = xhat + (long)rows * inner;           // y, then dy
                var g = y + (long)rows * inner;
                var slope = g + (long)rows * inner;
                var dzNorm = slope + (long)rows * inner;     // gradient of the LayerNorm input
                var rstd = dzNorm + (long)rows * inner;
                var da = rstd + rows;
                var e0 = c * ChunkExamples;
                var examples = Math.Min(ChunkExamples, sh.Batch - e0);
                var n = examples * l;
                var r0 = (long)e0 * l;
                Hidden(sh, (float*)h, (float*)w1t, (float*)b1, (float*)gamma, (float*)beta, spec, r0, n, z, xhat, rstd, y, g, slope);
                for (var e = 0; e < examples; e++)
                {
                    var b = e0 + e;
                    var weights = (float*)softmax + (long)b * l;
                    var dOutRow = (float*)dOut + (long)b * d;
                    var hb = (float*)h + (long)b * l * d;
                    var dhb = (float*)dh + (long)b * l * d;
                    // out = Σ w_i h_i: dw_i = dOut·h_i, dh_i = w_i·dOut; softmax: da_i = w_i (dw_i − Σ w·dw).
                    var dot = 0f;
                    for (var i = 0; i < l; i++)
                    {
                        da[e * l + i] = Dot(dOutRow, hb + (long)i * d, d);
                        dot += weights[i] * da[e * l + i];
                        Scale(dOutRow, weights[i], dhb + (long)i * d, d);
                    }
                    for (var i = 0; i < l; i++) da[e * l + i] = weights[i] * (da[e * l + i] - dot);
                }
                for (var i = 0; i < n; i++)
                {
                    var at = (long)i * inner;
                    dB2[0] += da[i];
                    ScoreBackwardRow(da[i], g + at, (float*)w2, slope + at, inner, dW2, y + at);
                    LayerNormRows.Backward(y + at, xhat + at, rstd[i], (float*)gamma, inner, dzNorm + at, dGamma, dBeta);
                }
                if (spec.P > 0) Dropout.WriteKeep(spec.Seed, r0 * inner >> 2, (long)n * inner, Dropout.Threshold(spec.P), Dropout.KeepScale(spec.P), z, dzNorm);
                else Buffer.MemoryCopy(dzNorm, z, (long)n * inner * sizeof(float), (long)n * inner * sizeof(float));
                for (var i = 0; i < n; i++) LayerNormRows.Add(dB1, z + (long)i * inner, inner);
                Gemm(z, 1, inner, (float*)h + r0 * d, d, dW1, d, inner, d, n, accumulate: true);
                Gemm(z, inner, 1, (float*)w1, d, (float*)dh + r0 * d, d, n, d, inner, accumulate: true);
            });
            using var sums = SumChunks(partialT);
            var bias = (long)inner * d;
            return new Gradients(Slice(sums, 0, inner, d), Slice(sums, bias, inner), Slice(sums, bias + inner, inner),
                Slice(sums, bias + 2 * inner, inner), Slice(sums, bias + 3 * inner, inner), Slice(sums, bias + 4 * inner, 1));
        }
    }
}
