using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using TorchSharp.Modules;
using static LSVCR.Modeling.CpuKernels;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LSVCR.Modeling;

/// <summary>
/// GELU(linear(x)) — the first half of the FFN of MODEL.md §2.1 (erf form) — for training as one autograd node:
/// libtorch GEMMs (MKL) for x·Wᵀ, dZ·W and dZᵀ·x, and one pass each way for everything else.
/// <para>Why: as libtorch ops the [B·L, inner] pre-activation (the widest tensor of a layer) is written by a bias
/// copy, re-read by the accumulating GEMM, read and written again by GELU, and backward gets a GELU-backward pass and
/// a separate bias-gradient reduction over it. Here the forward GEMM writes it once, one pass adds the bias and
/// applies GELU, and one backward pass gives dZ and the bias-gradient partial sums. No package offers it for
/// TorchSharp, hence this kernel.</para>
/// <para>GELU and its derivative use the same formulas as libtorch's vectorised CPU kernel: 0.5·z·(1 + erf(z/√2))
/// with erf from Abramowitz–Stegun 7.1.26 (|error| ≤ 1.5e-7), and 0.5·(1 + erf(z/√2)) + z·φ(z). Bias gradients are
/// summed per fixed chunk of rows and then over chunks in order, so they do not depend on the thread count.</para>
/// Saved for backward: x, W and the pre-activation z = x·Wᵀ + b.
/// </summary>
internal sealed class LinearGelu : autograd.SingleTensorFunction<LinearGelu>
{
    public override string Name => nameof(LinearGelu);

    public static Tensor Apply(Tensor x, Linear linear, bool training)
    {
        if (!training || x.dtype != ScalarType.Float32 || linear.bias is null) return F.gelu(linear.forward(x));
        var shape = x.shape;
        var flat = x.reshape(-1, shape[^1]).contiguous();
        var y = apply(flat, linear.weight!, linear.bias);
        return y.view([.. shape[..^1], linear.weight!.shape[0]]);
    }

    private const int ChunkRows = 256;

    /// <summary>The scalar erf the kernel uses (its vector form is the same formula).</summary>
    internal static float ErfForTests(float x) => Kernels.Erf(x);

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var (x, w, b) = ((Tensor)vars[0], (Tensor)vars[1], (Tensor)vars[2]);
        var z = x.mm(w.t());
        var g = empty_like(z);
        Kernels.Forward(z, b.detach().contiguous(), g);
        ctx.save_for_backward([x, w, z]);
        return g;
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
    {
        var saved = ctx.get_saved_variables();
        var (x, w, z) = (saved[0], saved[1], saved[2]);
        var dg = gradOutput.to(ScalarType.Float32).contiguous();
        var dz = empty_like(z);
        var db = Kernels.Backward(z, dg, dz);
        return [dz.mm(w), dz.t().mm(x), db];
    }

    private static unsafe class Kernels
    {
        public static void Forward(Tensor zT, Tensor bT, Tensor gT)
        {
            var (z, b, g) = ((nint)Ptr(zT), (nint)Ptr(bT), (nint)Ptr(gT));
            var (rows, n) = ((int)zT.shape[0], (int)zT.shape[1]);
            ForEach((rows + ChunkRows - 1) / ChunkRows, 0, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (c, _) =>
            {
                for (var i = c * ChunkRows; i < Math.Min(rows, (c + 1) * ChunkRows); i++)
                    GeluRow((float*)z + (long)i * n, (float*)b, (float*)g + (long)i * n, n);
            });
        }

        /// <summary>dz = dG · gelu'(z); returns the bias gradient Σ_rows dz.</summary>
        public static Tensor Backward(Tensor zT, Tensor dgT, Tensor dzT)
        {
            var (z, dg, dz) = ((nint)Ptr(zT), (nint)Ptr(dgT), (nint)Ptr(dzT));
            var (rows, n) = ((int)zT.shape[0], (int)zT.shape[1]);
            var chunks = (rows + ChunkRows - 1) / ChunkRows;
            using var partialT = zeros(chunks, n, dtype: ScalarType.Float32);
            var partial = (nint)Ptr(partialT);
            ForEach(chunks, 0, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (c, _) =>
            {
                for (var i = c * ChunkRows; i < Math.Min(rows, (c + 1) * ChunkRows); i++)
                    GeluBackwardRow((float*)z + (long)i * n, (float*)dg + (long)i * n, (float*)dz + (long)i * n, (float*)partial + (long)c * n, n);
            });
            return SumChunks(partialT);
        }

        private const float InvSqrt2 = 0.70710678118654752f;
        private const float InvSqrt2Pi = 0.39894228040143268f;

        /// <summary>z ← z + b (kept for the backward), g = 0.5·z·(1 + erf(z/√2)).</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void GeluRow(float* z, float* b, float* g, int n)
        {
            var j = 0;
            if (Avx512F.IsSupported)
                for (; j + 16 <= n; j += 16)
                {
                    var v = Vector512.Load(z + j) + Vector512.Load(b + j);
                    v.Store(z + j);
                    (v * Vector512.Create(0.5f) * (Vector512<float>.One + Erf(v * Vector512.Create(InvSqrt2)))).Store(g + j);
                }
            for (; j < n; j++)
            {
                var v = z[j] + b[j];
                z[j] = v;
                g[j] = v * 0.5f * (1f + Erf(v * InvSqrt2));
            }
        }

        /// <summary>dz = dG · (0.5·(1 + erf(z/√2)) + z·φ(z)); db += dz.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void GeluBackwardRow(float* z, float* dg, float* dz, float* db, int n)
        {
            var j = 0;
            if (Avx512F.IsSupported)
                for (; j + 16 <= n; j += 16)
                {
                    var v = Vector512.Load(z + j);
                    var cdf = Vector512.Create(0.5f) * (Vector512<float>.One + Erf(v * Vector512.Create(InvSqrt2)));
                    var pdf = Vector512.Create(InvSqrt2Pi) * CpuKernels.Exp(v * v * Vector512.Create(-0.5f));
                    var d = Vector512.Load(dg + j) * Vector512.FusedMultiplyAdd(v, pdf, cdf);
                    d.Store(dz + j);
                    (Vector512.Load(db + j) + d).Store(db + j);
                }
            for (; j < n; j++)
            {
                var v = z[j];
                var d = dg[j] * (0.5f * (1f + Erf(v * InvSqrt2)) + v * InvSqrt2Pi * MathF.Exp(-0.5f * v * v));
                dz[j] = d;
                db[j] += d;
            }
        }

        // Abramowitz–Stegun 7.1.26: erf(x) = sign(x)·(1 − t·r(t)·exp(−x²)), t = 1/(1 + p|x|).
        private const float P = 0.3275911f, A1 = 0.254829592f, A2 = -0.284496736f, A3 = 1.421413741f, A4 = -1.453152027f, A5 = 1.061405429f;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        internal static Vector512<float> Erf(Vector512<float> x)
        {
            var a = Vector512.Abs(x);
            var t = Reciprocal(Vector512.FusedMultiplyAdd(Vector512.Create(P), a, Vector512<float>.One));
            var r = Vector512.FusedMultiplyAdd(Vector512.Create(A5), t, Vector512.Create(A4));
            r = Vector512.FusedMultiplyAdd(r, t, Vector512.Create(A3));
            r = Vector512.FusedMultiplyAdd(r, t, Vector512.Create(A2));
            r = Vector512.FusedMultiplyAdd(r, t, Vector512.Create(A1));
            var y = Vector512<float>.One - t * r * CpuKernels.Exp(-(x * x));
            return Vector512.CopySign(y, x);
        }

        /// <summary>1/d from the 14-bit estimate and one Newton step (relative error ≈ 4e-9): a division costs
        /// several times more and dominated the pass.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static Vector512<float> Reciprocal(Vector512<float> d)
        {
            var t = Avx512F.Reciprocal14(d);
            return t * Vector512.FusedMultiplyAdd(-d, t, Vector512.Create(2f));
        }


        internal static float Erf(float x)
        {
            var a = MathF.Abs(x);
            var t = 1f / MathF.FusedMultiplyAdd(P, a, 1f);
            var r = MathF.FusedMultiplyAdd(MathF.FusedMultiplyAdd(MathF.FusedMultiplyAdd(MathF.FusedMultiplyAdd(A5, t, A4), t, A3), t, A2), t, A1);
            return MathF.CopySign(1f - t * r * MathF.Exp(-x * x), x);
        }
    }
}
