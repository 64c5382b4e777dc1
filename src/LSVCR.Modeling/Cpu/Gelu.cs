using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace LSVCR.Modeling.Cpu;

/// <summary>
/// GELU rows for the fused training kernels, in the erf form of MODEL.md §2.1 and with libtorch's vectorised CPU
/// formulas: 0.5·z·(1 + erf(z/√2)) with erf from Abramowitz–Stegun 7.1.26 (|error| ≤ 1.5e-7), derivative
/// 0.5·(1 + erf(z/√2)) + z·φ(z). No package offers a vectorised erf for .NET, hence these.
/// </summary>
internal static unsafe class Gelu
{
    private const float InvSqrt2 = 0.70710678118654752f;
    private const float InvSqrt2Pi = 0.39894228040143268f;

    /// <summary>g = GELU(v) = 0.5·v·(1 + erf(v/√2)) with v = z (+ b when given).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void ForwardRow(float* z, float* b, float* g, int n)
    {
        var j = 0;
        if (Avx512F.IsSupported)
            for (; j + 16 <= n; j += 16)
            {
                var v = Vector512.Load(z + j);
                if (b != null) v += Vector512.Load(b + j);
                (v * Vector512.Create(0.5f) * (Vector512<float>.One + Erf(v * Vector512.Create(InvSqrt2)))).Store(g + j);
            }
        for (; j < n; j++)
        {
            var v = b != null ? z[j] + b[j] : z[j];
            g[j] = v * 0.5f * (1f + Erf(v * InvSqrt2));
        }
    }

    /// <summary>The backward's recomputation in one pass: v = z (+ b when given), g = GELU(v) and slope = GELU'(v),
    /// sharing one erf and its exp(−v²/2) (which is also φ's). <paramref name="g"/> may be <paramref name="z"/>. With
    /// <paramref name="panels"/>, g is also stored as one row of <see cref="CpuKernels.Pack"/>ed panels: element j at
    /// panels[(j / 64)·<paramref name="panelStride"/> + j % 64].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void ValueAndSlopeRow(float* z, float* b, float* g, float* slope, int n, float* panels = null, long panelStride = 0)
    {
        const int W = CpuKernels.PanelWidth;
        var j = 0;
        if (Avx512F.IsSupported)
            for (; j + 16 <= n; j += 16)
            {
                var v = Vector512.Load(z + j);
                if (b != null) v += Vector512.Load(b + j);
                var erf = Erf(v * Vector512.Create(InvSqrt2), out var gaussian);
                var cdf = Vector512.Create(0.5f) * (Vector512<float>.One + erf);
                var value = v * cdf;
                value.Store(g + j);
                if (panels != null) value.Store(panels + j / W * panelStride + j % W); // 16 divides the panel width
                Vector512.FusedMultiplyAdd(v * Vector512.Create(InvSqrt2Pi), gaussian, cdf).Store(slope + j);
            }
        for (; j < n; j++)
        {
            var v = b != null ? z[j] + b[j] : z[j];
            var cdf = 0.5f * (1f + Erf(v * InvSqrt2));
            g[j] = v * cdf;
            if (panels != null) panels[j / W * panelStride + j % W] = g[j];
            slope[j] = cdf + v * InvSqrt2Pi * MathF.Exp(-0.5f * v * v);
        }
    }

    /// <summary>dz = dG · slope (slope from <see cref="ValueAndSlopeRow"/>); db += dz.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void SlopeBackwardRow(float* dg, float* slope, float* dz, float* db, int n)
    {
        var j = 0;
        if (Vector512.IsHardwareAccelerated)
            for (; j + 16 <= n; j += 16)
            {
                var d = Vector512.Load(dg + j) * Vector512.Load(slope + j);
                d.Store(dz + j);
                (Vector512.Load(db + j) + d).Store(db + j);
            }
        for (; j < n; j++)
        {
            var d = dg[j] * slope[j];
            dz[j] = d;
            db[j] += d;
        }
    }

    // Abramowitz–Stegun 7.1.26: erf(x) = sign(x)·(1 − t·r(t)·exp(−x²)), t = 1/(1 + p|x|).
    private const float P = 0.3275911f, A1 = 0.254829592f, A2 = -0.284496736f, A3 = 1.421413741f, A4 = -1.453152027f, A5 = 1.061405429f;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Erf(Vector512<float> x) => Erf(x, out _);

    /// <summary>erf(x), and exp(−x²) that the formula evaluates on the way.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Erf(Vector512<float> x, out Vector512<float> gaussian)
    {
        var a = Vector512.Abs(x);
        var t = Reciprocal(Vector512.FusedMultiplyAdd(Vector512.Create(P), a, Vector512<float>.One));
        var r = Vector512.FusedMultiplyAdd(Vector512.Create(A5), t, Vector512.Create(A4));
        r = Vector512.FusedMultiplyAdd(r, t, Vector512.Create(A3));
        r = Vector512.FusedMultiplyAdd(r, t, Vector512.Create(A2));
        r = Vector512.FusedMultiplyAdd(r, t, Vector512.Create(A1));
        gaussian = CpuKernels.Exp(-(x * x));
        var y = Vector512<float>.One - t * r * gaussian;
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

    public static float Erf(float x)
    {
        var a = MathF.Abs(x);
        var t = 1f / MathF.FusedMultiplyAdd(P, a, 1f);
        var r = MathF.FusedMultiplyAdd(MathF.FusedMultiplyAdd(MathF.FusedMultiplyAdd(MathF.FusedMultiplyAdd(A5, t, A4), t, A3), t, A2), t, A1);
        return MathF.CopySign(1f - t * r * MathF.Exp(-x * x), x);
    }
}
