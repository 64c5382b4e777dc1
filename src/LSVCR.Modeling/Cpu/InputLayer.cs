using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using static LSVCR.Modeling.Cpu.CpuKernels;
using static TorchSharp.torch;

namespace LSVCR.Modeling.Cpu;

/// <summary>
/// Step 3 of MODEL.md §2 for training, Dropout(LayerNorm(gate·id + x + pos)), as one autograd node over blocks of
/// rows: the sum, the norm and the dropout in one pass forward, and the dropout mask, the norm's backward and the
/// gradients of id, x, the position rows, gate, γ and β in one pass back.
/// <para>Why: as libtorch ops the step was an add, a mul, an add, LayerNorm (moments, then normalise) and the
/// dropout node forward, and as many passes back plus a reduction over the batch for the position rows and one for
/// gate — about a dozen passes over each history's [B·L, d] per step for very little arithmetic. No package offers
/// this for TorchSharp, hence this node.</para>
/// <para>Same arithmetic order (gate·id + (x + pos)) and the same dropout mask as the written-out ops: one seed,
/// drawn where <see cref="Dropout.Apply"/> would draw it, over the whole [B·L, d] tensor. Partial sums per block,
/// then over the blocks in order, so the gradients do not depend on the thread count.</para>
/// Saved for backward: id, x̂, rstd, gate, γ and the seed.
/// </summary>
internal sealed class InputLayer : autograd.SingleTensorFunction<InputLayer>
{
    public override string Name => nameof(InputLayer);

    /// <summary>Rows per work item and per partial sum.</summary>
    internal const int ChunkRows = 256;

    private sealed record Spec(int Length, ulong Seed, double P, float Eps);

    /// <summary>Dropout(LayerNorm(gate·id + x + pos)) in training; <paramref name="id"/> [B, L, d] with
    /// <paramref name="gate"/> (a scalar), or neither; <paramref name="x"/> [B, L, d] or null; <paramref name="pos"/>
    /// [L, d]. Null when the node does not apply (not float32), so the caller runs the written-out ops.</summary>
    public static Tensor? TryApply(Tensor? id, Tensor? gate, Tensor? x, Tensor pos, Tensor gamma, Tensor beta, double p, double eps)
    {
        var any = x ?? id;
        if (any is null || p >= 1 || (id is null) != (gate is null)) return null;
        if (any.dtype != ScalarType.Float32 || pos.dtype != ScalarType.Float32 || (gate is not null && gate.dtype != ScalarType.Float32)) return null;
        var (b, l, d) = (any.shape[0], any.shape[1], any.shape[2]);
        bool Fits(Tensor? t) => t is null || t.shape.SequenceEqual([b, l, d]);
        if (!Fits(id) || !Fits(x) || !pos.shape.SequenceEqual([l, d]) || gamma.shape[0] != d || beta.shape[0] != d || (gate is not null && gate.numel() != 1))
            throw new ArgumentException($"InputLayer: id, x [{string.Join(", ", any.shape)}], positions [{string.Join(", ", pos.shape)}] and the norm [{gamma.shape[0]}] do not fit.");
        var seed = p > 0 ? Dropout.NextSeed() : 0UL;
        var y = apply(id?.reshape(-1, d).contiguous()!, gate!, x?.reshape(-1, d).contiguous()!, pos.contiguous(), gamma, beta,
            new Spec((int)l, seed, p, (float)eps));
        return y.view(b, l, d);
    }

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var (id, gate, x, pos, gamma, beta, spec) = ((Tensor?)vars[0], (Tensor?)vars[1], (Tensor?)vars[2], (Tensor)vars[3],
            (Tensor)vars[4], (Tensor)vars[5], (Spec)vars[6]);
        var rows = (id ?? x)!.shape[0];
        var d = pos.shape[1];
        var y = empty(rows, d, dtype: ScalarType.Float32);
        var xhat = empty(rows, d, dtype: ScalarType.Float32);
        var rstd = empty(rows, dtype: ScalarType.Float32);
        var gateValue = gate is null ? 0f : gate.detach().item<float>();
        Kernels.Forward(id, gateValue, x, pos.detach(), gamma.detach().contiguous(), beta.detach().contiguous(), spec, y, xhat, rstd);
        ctx.save_for_backward([id ?? empty(0), xhat, rstd, gamma.detach().contiguous(), gate ?? empty(0)]);
        ctx.save_data("spec", spec);
        ctx.save_data("flags", (id is not null, x is not null));
        return y;
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
    {
        var s = ctx.get_saved_variables();
        var spec = (Spec)ctx.get_data("spec");
        var (hasId, hasX) = ((bool, bool))ctx.get_data("flags");
        var (xhat, rstd, gamma) = (s[1], s[2], s[3]);
        var id = hasId ? s[0] : null;
        var gateValue = hasId ? s[4].detach().item<float>() : 0f;
        var dy = gradOutput.to(ScalarType.Float32).contiguous();
        var dSum = empty_like(xhat); // the gradient of the sum: x's own
        var dId = hasId ? empty_like(xhat) : null;
        var g = Kernels.Backward(dy, xhat, rstd, gamma, id, gateValue, spec, dSum, dId);
        return [dId!, hasId ? g.Gate : null!, hasX ? dSum : null!, g.Pos, g.Gamma, g.Beta, null!];
    }

    private sealed record Gradients(Tensor Pos, Tensor Gate, Tensor Gamma, Tensor Beta);

    private static unsafe class Kernels
    {
        public static void Forward(Tensor? idT, float gate, Tensor? xT, Tensor posT, Tensor gammaT, Tensor betaT, Spec spec,
            Tensor yT, Tensor xhatT, Tensor rstdT)
        {
            var (rows, d, l) = ((int)yT.shape[0], (int)yT.shape[1], spec.Length);
            var id = idT is null ? 0 : (nint)Ptr(idT);
            var x = xT is null ? 0 : (nint)Ptr(xT);
            var (pos, gamma, beta, y, xhat, rstd) = ((nint)Ptr(posT), (nint)Ptr(gammaT), (nint)Ptr(betaT), (nint)Ptr(yT), (nint)Ptr(xhatT), (nint)Ptr(rstdT));
            var (threshold, scale) = (Dropout.Threshold(spec.P), Dropout.KeepScale(spec.P));
            ForEach((rows + ChunkRows - 1) / ChunkRows, d, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (c, scratch) =>
            {
                var z = (float*)scratch;
                var (r0, n) = (c * ChunkRows, Math.Min(ChunkRows, rows - c * ChunkRows));
                for (var r = r0; r < r0 + n; r++)
                {
                    var row = (long)r * d;
                    Sum(id == 0 ? null : (float*)id + row, gate, x == 0 ? null : (float*)x + row, (float*)pos + (long)(r % l) * d, z, d);
                    ((float*)rstd)[r] = LayerNormRows.Normalise(z, d, spec.Eps, (float*)xhat + row, (float*)gamma, (float*)beta, (float*)y + row);
                }
                // r0·d is a multiple of 4 (ChunkRows is): the chunk starts on a whole generator word.
                var yc = (float*)y + (long)r0 * d;
                if (spec.P > 0) Dropout.WriteKeep(spec.Seed, (long)r0 * d >> 2, (long)n * d, threshold, scale, yc, yc);
            });
        }

        /// <summary>z = gate·id + (x + pos), rounded as the written-out ops round it (no fused multiply-add).</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static void Sum(float* id, float gate, float* x, float* pos, float* z, int d)
        {
            var j = 0;
            if (Vector512.IsHardwareAccelerated)
                for (; j + 16 <= d; j += 16)
                {
                    var v = Vector512.Load(pos + j);
                    if (x != null) v = Vector512.Load(x + j) + v;
                    if (id != null) v = Vector512.Load(id + j) * Vector512.Create(gate) + v;
                    v.Store(z + j);
                }
            for (; j < d; j++)
            {
                var v = pos[j];
                if (x != null) v = x[j] + v;
                if (id != null) v = id[j] * gate + v;
                z[j] = v;
            }
        }

        public static Gradients Backward(Tensor dyT, Tensor xhatT, Tensor rstdT, Tensor gammaT, Tensor? idT, float gate, Spec spec,
            Tensor dSumT, Tensor? dIdT)
        {
            var (rows, d, l) = ((int)dyT.shape[0], (int)dyT.shape[1], spec.Length);
            var chunks = (rows + ChunkRows - 1) / ChunkRows;
            // One partial row per chunk: dγ | dβ [d] | d positions [L, d] | d gate [1].
            var width = 2 * d + l * d + 1;
            using var partialT = zeros(chunks, width, dtype: ScalarType.Float32);
            var partial = (nint)Ptr(partialT);
            var (dy, xhat, rstd, gamma, dSum) = ((nint)Ptr(dyT), (nint)Ptr(xhatT), (nint)Ptr(rstdT), (nint)Ptr(gammaT), (nint)Ptr(dSumT));
            var id = idT is null ? 0 : (nint)Ptr(idT);
            var dId = dIdT is null ? 0 : (nint)Ptr(dIdT);
            var (threshold, scale) = (Dropout.Threshold(spec.P), Dropout.KeepScale(spec.P));
            ForEach(chunks, ChunkRows * d, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (c, scratch) =>
            {
                var dGamma = (float*)partial + (long)c * width;
                var dBeta = dGamma + d;
                var dPos = dBeta + d;
                var dGate = dPos + (long)l * d;
                var (r0, n) = (c * ChunkRows, Math.Min(ChunkRows, rows - c * ChunkRows));
                var dyc = (float*)dy + (long)r0 * d;
                var dNorm = dyc; // the norm's output gradient: dy through the dropout mask
                if (spec.P > 0)
                {
                    dNorm = (float*)scratch;
                    Dropout.WriteKeep(spec.Seed, (long)r0 * d >> 2, (long)n * d, threshold, scale, dNorm, dyc);
                }
                var gateSum = 0f;
                for (var i = 0; i < n; i++)
                {
                    var row = (long)(r0 + i) * d;
                    var ds = (float*)dSum + row;
                    LayerNormRows.Backward(dNorm + (long)i * d, (float*)xhat + row, ((float*)rstd)[r0 + i], (float*)gamma, d, ds, dGamma, dBeta);
                    LayerNormRows.Add(dPos + (long)((r0 + i) % l) * d, ds, d);
                    if (id == 0) continue;
                    gateSum += Dot(ds, (float*)id + row, d);
                    Scale(ds, gate, (float*)dId + row, d);
                }
                *dGate = gateSum;
            });
            using var sums = SumChunks(partialT);
            return new Gradients(Slice(sums, 2 * d, l, d), Slice(sums, 2L * d + (long)l * d), Slice(sums, 0, d), Slice(sums, d, d));
        }
    }
}
