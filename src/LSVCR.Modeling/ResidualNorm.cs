using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using TorchSharp.Modules;
using static LSVCR.Modeling.CpuKernels;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LSVCR.Modeling;

/// <summary>
/// The post-norm residual of MODEL.md §2.1, LayerNorm(Dropout(linear(x)) + r), for training as one autograd node
/// after the GEMM x·Wᵀ, with a hand-written forward and backward for bias, dropout, residual and LayerNorm;
/// evaluation uses the libtorch modules (dropout is the identity there).
/// <para>Why: as libtorch ops it is the dropout node, an add, LayerNorm's moments and normalise passes, and backward
/// LayerNorm's row pass, its separate γ/β reductions and the dropout backward — about eight passes over a
/// [B·L, d] tensor, ten times per step (two per transformer layer), plus the linear layer's bias copy into its
/// GEMM output and its bias-gradient reduction. Here the forward and the backward are one pass each. No package
/// offers it for TorchSharp, hence this kernel.</para>
/// <para>Same arithmetic as the written-out reference: the dropout keep mask is <see cref="Dropout.KeepMask"/>'s
/// stream with one seed drawn where <c>Dropout.Apply</c> would draw it, so masks (and seeded runs) are unchanged;
/// LayerNorm uses the biased variance, rstd = 1/√(var + eps). γ/β/bias gradients are summed per fixed chunk of rows
/// and then over chunks in order, so they do not depend on the thread count.</para>
/// Saved for backward: x̂ = (z − mean)·rstd [rows, d], rstd [rows], γ and the dropout seed. The chunk start
/// (ChunkRows·d elements) is always a whole number of the generator's 4-element words.
/// </summary>
internal sealed class ResidualNorm : autograd.SingleTensorFunction<ResidualNorm>
{
    public override string Name => nameof(ResidualNorm);

    private sealed record Spec(ulong Seed, double P, float Eps);

    /// <summary>LayerNorm(Dropout(linear(x)) + r). In training the linear layer's bias is added inside the node:
    /// x·Wᵀ is a plain MKL GEMM (no bias copy into its output, no accumulating pass), and the bias gradient comes
    /// out of the backward pass instead of a separate reduction.</summary>
    /// <param name="x">[..., in] the sublayer's hidden state (attention context, FFN inner activation).</param>
    /// <param name="r">[..., d] the residual input.</param>
    public static Tensor Apply(Linear linear, Tensor x, Tensor r, LayerNorm norm, double p, double eps, bool training)
    {
        if (!training || x.dtype != ScalarType.Float32 || p >= 1 || linear.bias is null)
            return norm.forward(Dropout.Apply(linear.forward(x), p, training).add(r));
        var h = F.linear(x, linear.weight!);
        if (!h.shape.SequenceEqual(r.shape)) throw new ArgumentException($"ResidualNorm: linear(x) [{string.Join(", ", h.shape)}] and r [{string.Join(", ", r.shape)}] differ.");
        var seed = p > 0 ? Dropout.NextSeed() : 0UL;
        return apply(h.contiguous(), r.to(ScalarType.Float32).contiguous(), norm.weight!, norm.bias!, linear.bias, new Spec(seed, p, (float)eps));
    }

    /// <summary>Rows per work item: the unit of the γ/β/bias partial sums (a multiple of 4).</summary>
    private const int ChunkRows = 256;

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var (h, r, gamma, beta, bias, spec) = ((Tensor)vars[0], (Tensor)vars[1], (Tensor)vars[2], (Tensor)vars[3], (Tensor)vars[4], (Spec)vars[5]);
        var d = (int)h.shape[^1];
        var rows = h.numel() / d;
        var y = empty_like(h);
        var xhat = empty_like(h);
        var rstd = empty(rows, dtype: ScalarType.Float32);
        Kernels.Forward(h, r, gamma.detach().contiguous(), beta.detach().contiguous(), bias.detach().contiguous(), y, xhat, rstd, d, spec);
        ctx.save_for_backward([xhat, rstd, gamma]);
        ctx.save_data("spec", spec);
        return y;
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
    {
        var saved = ctx.get_saved_variables();
        var (xhat, rstd, gamma) = (saved[0], saved[1], saved[2]);
        var spec = (Spec)ctx.get_data("spec");
        var d = (int)xhat.shape[^1];
        var dy = gradOutput.to(ScalarType.Float32).contiguous();
        var dh = empty_like(xhat);
        var dr = empty_like(xhat);
        var (dGamma, dBeta, dBias) = Kernels.Backward(dy, xhat, rstd, gamma.detach().contiguous(), dh, dr, d, spec);
        return [dh, dr, dGamma, dBeta, dBias, null!];
    }

    private static unsafe class Kernels
    {
        public static void Forward(Tensor hT, Tensor rT, Tensor gammaT, Tensor betaT, Tensor biasT, Tensor yT, Tensor xhatT, Tensor rstdT, int d, Spec spec)
        {
            var (h, r, gamma, beta, bias, y, xhat, rstd) = ((nint)Ptr(hT), (nint)Ptr(rT), (nint)Ptr(gammaT), (nint)Ptr(betaT), (nint)Ptr(biasT), (nint)Ptr(yT), (nint)Ptr(xhatT), (nint)Ptr(rstdT));
            var rows = (int)(hT.numel() / d);
            var (threshold, scale) = (Dropout.Threshold(spec.P), Dropout.KeepScale(spec.P));
            ForEach((rows + ChunkRows - 1) / ChunkRows, ChunkRows * d, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (c, scratch) =>
            {
                var (r0, n) = (c * ChunkRows, Math.Min(ChunkRows, rows - c * ChunkRows));
                var z = (float*)scratch;
                for (var i = 0; i < n; i++) LayerNormRows.AddBias((float*)h + (long)(r0 + i) * d, (float*)bias, z + (long)i * d, d);
                if (spec.P > 0) Dropout.WriteKeep(spec.Seed, (long)r0 * d >> 2, n * d, threshold, scale, z, z);
                for (var i = 0; i < n; i++)
                {
                    var row = (long)(r0 + i) * d;
                    var zi = z + (long)i * d;
                    LayerNormRows.Add(zi, (float*)r + row, d);
                    ((float*)rstd)[r0 + i] = LayerNormRows.Normalise(zi, d, spec.Eps, (float*)xhat + row, (float*)gamma, (float*)beta, (float*)y + row);
                }
            });
        }

        public static (Tensor DGamma, Tensor DBeta, Tensor DBias) Backward(Tensor dyT, Tensor xhatT, Tensor rstdT, Tensor gammaT, Tensor dhT, Tensor drT, int d, Spec spec)
        {
            var (dy, xhat, rstd, gamma, dh, dr) = ((nint)Ptr(dyT), (nint)Ptr(xhatT), (nint)Ptr(rstdT), (nint)Ptr(gammaT), (nint)Ptr(dhT), (nint)Ptr(drT));
            var rows = (int)(dyT.numel() / d);
            var chunks = (rows + ChunkRows - 1) / ChunkRows;
            using var partialT = zeros(chunks, 3, d, dtype: ScalarType.Float32);
            var partial = (nint)Ptr(partialT);
            var (threshold, scale) = (Dropout.Threshold(spec.P), Dropout.KeepScale(spec.P));
            ForEach(chunks, 0, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (c, _) =>
            {
                var (r0, n) = (c * ChunkRows, Math.Min(ChunkRows, rows - c * ChunkRows));
                var dGamma = (float*)partial + (long)c * 3 * d;
                var dBeta = dGamma + d;
                var dBias = dBeta + d;
                for (var i = 0; i < n; i++)
                {
                    var row = (long)(r0 + i) * d;
                    LayerNormRows.Backward((float*)dy + row, (float*)xhat + row, ((float*)rstd)[r0 + i], (float*)gamma, d, (float*)dr + row, dGamma, dBeta);
                }
                var first = (long)r0 * d; // a whole number of words: ChunkRows is a multiple of 4
                if (spec.P > 0) Dropout.WriteKeep(spec.Seed, first >> 2, n * d, threshold, scale, (float*)dh + first, (float*)dr + first);
                else new Span<float>((float*)dr + first, n * d).CopyTo(new Span<float>((float*)dh + first, n * d));
                for (var i = 0; i < n; i++) LayerNormRows.Add(dBias, (float*)dh + first + (long)i * d, d); // d bias = Σ_rows dh
            });
            var sums = SumChunks(partialT.view(chunks, 3 * d));
            // Separate storages for the three .grad tensors.
            return (sums.narrow(0, 0, d).clone(), sums.narrow(0, d, d).clone(), sums.narrow(0, 2 * d, d).clone());
        }
    }
}
