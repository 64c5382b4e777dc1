using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace LSVCR.Modeling.Cpu;

/// <summary>The post-norm residual LayerNorm(Dropout(z) + r) shared by <see cref="FusedMultiHeadAttention"/> and
/// <see cref="FusedFeedForward"/>, over blocks of rows: biased variance, rstd = 1/√(var + eps), as libtorch's
/// LayerNorm.</summary>
internal static unsafe class LayerNormRows
{
    /// <summary>The forward tail of a post-norm residual sublayer for the n rows from row r0: z (the sublayer's
    /// output with its bias, [n, d] scratch) ← Dropout(z) + r, then out = LayerNorm(z) with x̂ and rstd kept for
    /// <see cref="ResidualBackward"/>. The dropout mask is <see cref="Dropout.WriteKeep"/>'s stream of the whole
    /// [rows, d] tensor, so r0·d must be a multiple of 4 (a whole generator word). r, xhat, rstd, output: whole-tensor
    /// pointers.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void ResidualForward(float* z, long r0, int n, int d, float* r, ulong seed, double p, float eps,
        float* gamma, float* beta, float* xhat, float* rstd, float* output)
    {
        if (p > 0) Dropout.WriteKeep(seed, r0 * d >> 2, (long)n * d, Dropout.Threshold(p), Dropout.KeepScale(p), z, z);
        for (var i = 0; i < n; i++)
        {
            var row = (r0 + i) * d;
            var zi = z + (long)i * d;
            Add(zi, r + row, d);
            rstd[r0 + i] = Normalise(zi, d, eps, xhat + row, gamma, beta, output + row);
        }
    }

    /// <summary>The backward of <see cref="ResidualForward"/> for the same rows: the residual's gradient into dr
    /// (whole-tensor pointer), the sublayer output's gradient (through the same dropout mask) into dz ([n, d] scratch),
    /// and the γ/β/bias gradients added to their partial sums.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void ResidualBackward(float* dOut, long r0, int n, int d, float* xhat, float* rstd, float* gamma,
        ulong seed, double p, float* dr, float* dz, float* dGamma, float* dBeta, float* dBias)
    {
        var drc = dr + r0 * d;
        for (var i = 0; i < n; i++)
        {
            var row = (r0 + i) * d;
            Backward(dOut + row, xhat + row, rstd[r0 + i], gamma, d, drc + (long)i * d, dGamma, dBeta);
        }
        if (p > 0) Dropout.WriteKeep(seed, r0 * d >> 2, (long)n * d, Dropout.Threshold(p), Dropout.KeepScale(p), dz, drc);
        else Buffer.MemoryCopy(drc, dz, (long)n * d * sizeof(float), (long)n * d * sizeof(float));
        for (var i = 0; i < n; i++) Add(dBias, dz + (long)i * d, d);
    }

    /// <summary>z += r for one row (also the kernels' bias-gradient sums).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Add(float* z, float* r, int d)
    {
        var j = 0;
        if (Vector512.IsHardwareAccelerated)
            for (; j + 16 <= d; j += 16) (Vector512.Load(z + j) + Vector512.Load(r + j)).Store(z + j);
        for (; j < d; j++) z[j] += r[j];
    }

    /// <summary>x̂ = (z − mean)·rstd, y = x̂·γ + β for one row; returns rstd.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Normalise(float* z, int d, float eps, float* xhat, float* gamma, float* beta, float* y)
    {
        var (sum, j) = (0f, 0);
        if (Vector512.IsHardwareAccelerated)
        {
            var acc = Vector512<float>.Zero;
            for (; j + 16 <= d; j += 16) acc += Vector512.Load(z + j);
            sum = Vector512.Sum(acc);
        }
        for (; j < d; j++) sum += z[j];
        var mean = sum / d;
        var (sq, k) = (0f, 0);
        if (Vector512.IsHardwareAccelerated)
        {
            var (acc, m) = (Vector512<float>.Zero, Vector512.Create(mean));
            for (; k + 16 <= d; k += 16)
            {
                var c = Vector512.Load(z + k) - m;
                acc = Vector512.FusedMultiplyAdd(c, c, acc);
            }
            sq = Vector512.Sum(acc);
        }
        for (; k < d; k++) sq += (z[k] - mean) * (z[k] - mean);
        var rstd = 1f / MathF.Sqrt(sq / d + eps);
        var t = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var (m, s) = (Vector512.Create(mean), Vector512.Create(rstd));
            for (; t + 16 <= d; t += 16)
            {
                var x = (Vector512.Load(z + t) - m) * s;
                x.Store(xhat + t);
                Vector512.FusedMultiplyAdd(x, Vector512.Load(gamma + t), Vector512.Load(beta + t)).Store(y + t);
            }
        }
        for (; t < d; t++)
        {
            var x = (z[t] - mean) * rstd;
            xhat[t] = x;
            y[t] = MathF.FusedMultiplyAdd(x, gamma[t], beta[t]);
        }
        return rstd;
    }

    /// <summary>One row: g = dy·γ, dz = rstd·(g − mean(g) − x̂·mean(g·x̂)); dγ += dy·x̂, dβ += dy.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Backward(float* dy, float* xhat, float rstd, float* gamma, int d, float* dz, float* dGamma, float* dBeta)
    {
        var (sg, sgx, j) = (0f, 0f, 0);
        if (Vector512.IsHardwareAccelerated)
        {
            var (a, b) = (Vector512<float>.Zero, Vector512<float>.Zero);
            for (; j + 16 <= d; j += 16)
            {
                var (dyv, x) = (Vector512.Load(dy + j), Vector512.Load(xhat + j));
                var g = dyv * Vector512.Load(gamma + j);
                a += g;
                b = Vector512.FusedMultiplyAdd(g, x, b);
                Vector512.FusedMultiplyAdd(dyv, x, Vector512.Load(dGamma + j)).Store(dGamma + j);
                (Vector512.Load(dBeta + j) + dyv).Store(dBeta + j);
            }
            (sg, sgx) = (Vector512.Sum(a), Vector512.Sum(b));
        }
        for (; j < d; j++)
        {
            var g = dy[j] * gamma[j];
            sg += g;
            sgx += g * xhat[j];
            dGamma[j] += dy[j] * xhat[j];
            dBeta[j] += dy[j];
        }
        var (meanG, meanGx) = (sg / d, sgx / d);
        var t = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var (mg, mgx, s) = (Vector512.Create(meanG), Vector512.Create(meanGx), Vector512.Create(rstd));
            for (; t + 16 <= d; t += 16)
            {
                var g = Vector512.Load(dy + t) * Vector512.Load(gamma + t);
                ((g - mg - Vector512.Load(xhat + t) * mgx) * s).Store(dz + t);
            }
        }
        for (; t < d; t++) dz[t] = (dy[t] * gamma[t] - meanG - xhat[t] * meanGx) * rstd;
    }
}
