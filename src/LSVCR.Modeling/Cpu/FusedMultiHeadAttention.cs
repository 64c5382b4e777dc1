using System.Runtime.CompilerServices;
using static LSVCR.Modeling.Cpu.CpuKernels;
using static TorchSharp.torch;

namespace LSVCR.Modeling.Cpu;

/// <summary>
/// The whole attention sublayer of MODEL.md §2.1 for training, LayerNorm(Dropout(out_linear(attention(q(x), k(y),
/// v(y)))) + x), as one autograd node that works through the batch in chunks of <see cref="ChunkExamples"/>
/// examples: the chunk's q/k/v projections (<see cref="CpuKernels.Gemm"/>), the attention heads
/// (<see cref="FusedAttention.Kernels"/>), out_linear, bias, dropout, residual and LayerNorm run while the chunk's
/// rows sit in L2, and the backward runs the same steps in reverse per chunk. Self-attention is y = x.
/// <para>Why: as separate nodes every projection was an MKL call that packed its operands again and wrote a
/// [B·L, 3d] tensor to memory, its backward two more GEMM calls, a bias reduction and a gradient accumulation into
/// x, and the post-norm residual one more node with its own passes; the sublayer ran far below the FMA peak (its
/// arithmetic is small: d = 64). No package offers a fused transformer attention block for TorchSharp, hence this.</para>
/// <para>Same arithmetic and random streams as the written-out modules: two seeds are drawn, the attention dropout's
/// and then the hidden dropout's, where <c>FusedAttention</c> and <c>Dropout.Apply</c> would draw them, so masks and
/// seeded runs are unchanged. Parameter gradients are summed per chunk and then over the chunks in order, so they do
/// not depend on the thread count.</para>
/// Saved for backward: x, y, the mask, Q, K|V, the softmax probabilities, the context, x̂, rstd, the weights and the
/// two seeds.
/// </summary>
internal sealed class FusedMultiHeadAttention : autograd.SingleTensorFunction<FusedMultiHeadAttention>
{
    public override string Name => nameof(FusedMultiHeadAttention);

    /// <summary>Examples per work item and per parameter-gradient partial sum: at L = 50, 400 rows.</summary>
    internal const int ChunkExamples = 8;

    internal sealed record Spec(int Heads, double AttentionDropout, double HiddenDropout, float Eps, bool SelfAttention,
        ulong AttentionSeed = 0, ulong HiddenSeed = 0);

    /// <summary>The projection and norm parameters, as the module holds them.</summary>
    internal sealed record Parameters(Tensor QueryWeight, Tensor QueryBias, Tensor KeyValueWeight, Tensor KeyValueBias,
        Tensor OutWeight, Tensor OutBias, Tensor Gamma, Tensor Beta);

    /// <param name="x">[B, Lq, d] the queries' input and the residual.</param>
    /// <param name="y">[B, Lk, d] the keys' and values' input; null = self-attention (y = x).</param>
    /// <param name="mask">additive, [B, 1, Lq|1, Lk] or [B, Lq|1, Lk].</param>
    /// <param name="p">k and v weights stacked as [2d, d] (k rows first) with their biases.</param>
    public static Tensor Apply(Tensor x, Tensor? y, Tensor mask, Parameters p, int heads, double attentionDropout, double hiddenDropout, double eps)
    {
        var kv = y ?? x;
        if (x.dim() != 3 || kv.dim() != 3 || kv.shape[0] != x.shape[0] || kv.shape[2] != x.shape[2] || x.shape[2] % heads != 0)
            throw new ArgumentException($"FusedMultiHeadAttention: x [{string.Join(", ", x.shape)}] and y [{string.Join(", ", kv.shape)}] do not fit {heads} heads of width d.");
        var (b, lq, d) = (x.shape[0], x.shape[1], x.shape[2]);
        // The kernels read every parameter through raw pointers at these sizes.
        bool Is(Tensor t, params long[] shape) => t.shape.SequenceEqual(shape);
        if (!Is(p.QueryWeight, d, d) || !Is(p.QueryBias, d) || !Is(p.KeyValueWeight, 2 * d, d) || !Is(p.KeyValueBias, 2 * d)
            || !Is(p.OutWeight, d, d) || !Is(p.OutBias, d) || !Is(p.Gamma, d) || !Is(p.Beta, d))
            throw new ArgumentException($"FusedMultiHeadAttention: projection or norm parameters do not match d = {d}.");
        var m = mask.dim() == 4 ? mask.squeeze(1) : mask;
        if (m.dim() != 3 || m.shape[0] != b || (m.shape[1] != 1 && m.shape[1] != lq) || m.shape[2] != kv.shape[1])
            throw new ArgumentException($"attention mask of shape [{string.Join(", ", mask.shape)}] does not broadcast to [{b}, heads, {lq}, {kv.shape[1]}]");
        var attentionSeed = attentionDropout > 0 ? Dropout.NextSeed() : 0UL;
        var hiddenSeed = hiddenDropout > 0 ? Dropout.NextSeed() : 0UL;
        var spec = new Spec(heads, attentionDropout, hiddenDropout, (float)eps, y is null, attentionSeed, hiddenSeed);
        return apply(x.to(ScalarType.Float32).contiguous(), y is null ? null! : y.to(ScalarType.Float32).contiguous(),
            m.to(ScalarType.Float32).contiguous(), p.QueryWeight, p.QueryBias, p.KeyValueWeight, p.KeyValueBias,
            p.OutWeight, p.OutBias, p.Gamma, p.Beta, spec);
    }

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var spec = (Spec)vars[11];
        var x = (Tensor)vars[0];
        var y = spec.SelfAttention ? x : (Tensor)vars[1];
        var mask = (Tensor)vars[2];
        var w = Weights.Of((Tensor)vars[3], (Tensor)vars[4], (Tensor)vars[5], (Tensor)vars[6], (Tensor)vars[7], (Tensor)vars[8], (Tensor)vars[9], (Tensor)vars[10]);
        var g = Geometry(x, y, mask, spec);
        var t = new Activations(
            empty(g.Batch, g.Lq, g.D, dtype: ScalarType.Float32), empty(g.Batch, g.Lk, 2 * g.D, dtype: ScalarType.Float32),
            empty(g.Batch, g.Heads, g.Lq, g.Lk, dtype: ScalarType.Float32), empty(g.Batch, g.Lq, g.D, dtype: ScalarType.Float32),
            empty(g.Batch, g.Lq, g.D, dtype: ScalarType.Float32), empty(g.Batch * g.Lq, dtype: ScalarType.Float32));
        var output = empty_like(x);
        Kernels.Forward(g, spec, x, y, mask, w, t, output);
        ctx.save_for_backward([x, y, mask, t.Q, t.Kv, t.Probs, t.Context, t.XHat, t.Rstd, w.Wq, w.Bq, w.Wkv, w.Bkv, w.Wo, w.Bo, w.Gamma]);
        ctx.save_data("spec", spec);
        return output;
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
    {
        var s = ctx.get_saved_variables();
        var spec = (Spec)ctx.get_data("spec");
        var (x, y, mask) = (s[0], s[1], s[2]);
        var t = new Activations(s[3], s[4], s[5], s[6], s[7], s[8]);
        var w = new Weights(s[9], null!, s[10], s[11], null!, s[12], s[13], null!, s[14], s[15], null!);
        var g = Geometry(x, y, mask, spec);
        var dOut = gradOutput.to(ScalarType.Float32).contiguous();
        var dx = empty_like(x);
        var dy = spec.SelfAttention ? null : empty_like(y);
        var grads = Kernels.Backward(g, spec, x, y, t, w, dOut, dx, dy);
        return [dx, dy!, null!, grads.Wq, grads.Bq, grads.Wkv, grads.Bkv, grads.Wo, grads.Bo, grads.Gamma, grads.Beta, null!];
    }

    private static FusedAttention.Geometry Geometry(Tensor x, Tensor y, Tensor mask, Spec spec)
    {
        var d = (int)x.shape[2];
        return new FusedAttention.Geometry((int)x.shape[0], spec.Heads, d / spec.Heads, (int)x.shape[1], (int)y.shape[1],
            (int)mask.shape[1], d, 2 * d, 0, d);
    }

    /// <summary>Forward results kept for the backward: Q [B, Lq, d], K|V [B, Lk, 2d], probabilities, the context
    /// [B, Lq, d] (out_linear's input), x̂ and rstd of the LayerNorm.</summary>
    private sealed record Activations(Tensor Q, Tensor Kv, Tensor Probs, Tensor Context, Tensor XHat, Tensor Rstd);

    /// <summary>Detached contiguous weights; the forward GEMMs read the transposes (…T) row-major.</summary>
    private sealed record Weights(Tensor Wq, Tensor WqT, Tensor Bq, Tensor Wkv, Tensor WkvT, Tensor Bkv, Tensor Wo, Tensor WoT,
        Tensor Bo, Tensor Gamma, Tensor Beta)
    {
        public static Weights Of(Tensor wq, Tensor bq, Tensor wkv, Tensor bkv, Tensor wo, Tensor bo, Tensor gamma, Tensor beta)
        {
            static Tensor C(Tensor t) => t.detach().to(ScalarType.Float32).contiguous();
            var (q, kv, o) = (C(wq), C(wkv), C(wo));
            return new Weights(q, q.t().contiguous(), C(bq), kv, kv.t().contiguous(), C(bkv), o, o.t().contiguous(), C(bo), C(gamma), C(beta));
        }
    }

    private sealed record Gradients(Tensor Wq, Tensor Bq, Tensor Wkv, Tensor Bkv, Tensor Wo, Tensor Bo, Tensor Gamma, Tensor Beta);

    private static unsafe class Kernels
    {
        public static void Forward(FusedAttention.Geometry g, Spec spec, Tensor xT, Tensor yT, Tensor maskT, Weights wt, Activations t, Tensor outT)
        {
            var args = new FusedAttention.Kernels.Args(g, Ptr(t.Q), Ptr(t.Kv), Ptr(maskT), Ptr(t.Probs), Ptr(t.Context), null, null, spec.AttentionSeed, spec.AttentionDropout);
            var (d, lq, lk) = (g.D, g.Lq, g.Lk);
            var (x, y, q, kv, context) = ((nint)Ptr(xT), (nint)Ptr(yT), (nint)Ptr(t.Q), (nint)Ptr(t.Kv), (nint)Ptr(t.Context));
            var (wqT, bq, wkvT, bkv, woT, bo) = ((nint)Ptr(wt.WqT), (nint)Ptr(wt.Bq), (nint)Ptr(wt.WkvT), (nint)Ptr(wt.Bkv), (nint)Ptr(wt.WoT), (nint)Ptr(wt.Bo));
            var (gamma, beta, xhat, rstd, output) = ((nint)Ptr(wt.Gamma), (nint)Ptr(wt.Beta), (nint)Ptr(t.XHat), (nint)Ptr(t.Rstd), (nint)Ptr(outT));
            var chunks = (g.Batch + ChunkExamples - 1) / ChunkExamples;
            var attentionScratch = FusedAttention.Kernels.ForwardScratch(g);
            ForEach(chunks, attentionScratch + ChunkExamples * lq * d, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (c, scratch) =>
            {
                var (b0, examples) = (c * ChunkExamples, Math.Min(ChunkExamples, g.Batch - c * ChunkExamples));
                var (r0, n, k0, nk) = ((long)b0 * lq, examples * lq, (long)b0 * lk, examples * lk);
                var z = (float*)scratch + attentionScratch; // [n, d] out_linear's output
                var qc = (float*)q + r0 * d;
                var kvc = (float*)kv + k0 * 2 * d;
                Gemm((float*)x + r0 * d, d, 1, (float*)wqT, d, qc, d, n, d, d, bias: (float*)bq);
                Gemm((float*)y + k0 * d, d, 1, (float*)wkvT, 2 * d, kvc, 2 * d, nk, 2 * d, d, bias: (float*)bkv);
                for (var e = 0; e < examples; e++) FusedAttention.Kernels.ForwardExample(args, b0 + e, (float*)scratch);
                Gemm((float*)context + r0 * d, d, 1, (float*)woT, d, z, d, n, d, d, bias: (float*)bo);
                // b0·Lq·d is a multiple of 4 (b0 is a multiple of ChunkExamples): the chunk starts on a whole word.
                LayerNormRows.ResidualForward(z, r0, n, d, (float*)x, spec.HiddenSeed, spec.HiddenDropout, spec.Eps, (float*)gamma,
                    (float*)beta, (float*)xhat, (float*)rstd, (float*)output);
            });
        }

        public static Gradients Backward(FusedAttention.Geometry g, Spec spec, Tensor xT, Tensor yT, Activations t, Weights wt, Tensor dOutT, Tensor dxT, Tensor? dyT)
        {
            var (d, lq, lk) = (g.D, g.Lq, g.Lk);
            using var dContextT = empty(g.Batch, lq, d, dtype: ScalarType.Float32);
            using var dQT = empty(g.Batch, lq, d, dtype: ScalarType.Float32);
            using var dKvT = empty(g.Batch, lk, 2 * d, dtype: ScalarType.Float32);
            var args = new FusedAttention.Kernels.Args(g, Ptr(t.Q), Ptr(t.Kv), null, Ptr(t.Probs), Ptr(dContextT), Ptr(dQT), Ptr(dKvT), spec.AttentionSeed, spec.AttentionDropout);
            var (x, y, context, dOut, dx) = ((nint)Ptr(xT), (nint)Ptr(yT), (nint)Ptr(t.Context), (nint)Ptr(dOutT), (nint)Ptr(dxT));
            var dy = dyT is null ? dx : (nint)Ptr(dyT);
            var (dContext, dQ, dKv) = ((nint)Ptr(dContextT), (nint)Ptr(dQT), (nint)Ptr(dKvT));
            var (wq, wkv, wo, gamma, xhat, rstd) = ((nint)Ptr(wt.Wq), (nint)Ptr(wt.Wkv), (nint)Ptr(wt.Wo), (nint)Ptr(wt.Gamma), (nint)Ptr(t.XHat), (nint)Ptr(t.Rstd));
            var self = spec.SelfAttention;
            var chunks = (g.Batch + ChunkExamples - 1) / ChunkExamples;
            // One partial row per chunk: dWq [d, d] | dWkv [2d, d] | dWo [d, d] | dbq [d] | dbkv [2d] | dbo | dγ | dβ [d].
            var width = 4 * d * d + 6 * d;
            using var partialT = zeros(chunks, width, dtype: ScalarType.Float32);
            var partial = (nint)Ptr(partialT);
            var attentionScratch = FusedAttention.Kernels.BackwardScratch(g);
            ForEach(chunks, attentionScratch + ChunkExamples * lq * d, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (c, scratch) =>
            {
                var (b0, examples) = (c * ChunkExamples, Math.Min(ChunkExamples, g.Batch - c * ChunkExamples));
                var (r0, n, k0, nk) = ((long)b0 * lq, examples * lq, (long)b0 * lk, examples * lk);
                var dWq = (float*)partial + (long)c * width;
                var dWkv = dWq + d * d;
                var dWo = dWkv + 2 * d * d;
                var dBq = dWo + d * d;
                var dBkv = dBq + d;
                var dBo = dBkv + 2 * d;
                var dGamma = dBo + d;
                var dBeta = dGamma + d;
                var dz = (float*)scratch + attentionScratch; // [n, d] gradient of out_linear's output
                var dxc = (float*)dx + r0 * d;
                LayerNormRows.ResidualBackward((float*)dOut, r0, n, d, (float*)xhat, (float*)rstd, (float*)gamma, spec.HiddenSeed,
                    spec.HiddenDropout, (float*)dx, dz, dGamma, dBeta, dBo);
                var contextc = (float*)context + r0 * d;
                var dContextc = (float*)dContext + r0 * d;
                Gemm(dz, 1, d, contextc, d, dWo, d, d, d, n, accumulate: true);
                Gemm(dz, d, 1, (float*)wo, d, dContextc, d, n, d, d);
                for (var e = 0; e < examples; e++) FusedAttention.Kernels.BackwardExample(args, b0 + e, (float*)scratch);
                var xc = (float*)x + r0 * d;
                var yc = (float*)y + k0 * d;
                var dQc = (float*)dQ + r0 * d;
                var dKvc = (float*)dKv + k0 * 2 * d;
                for (var i = 0; i < n; i++) LayerNormRows.Add(dBq, dQc + (long)i * d, d);
                for (var i = 0; i < nk; i++) LayerNormRows.Add(dBkv, dKvc + (long)i * 2 * d, 2 * d);
                Gemm(dQc, 1, d, xc, d, dWq, d, d, d, n, accumulate: true);
                Gemm(dKvc, 1, 2 * d, yc, d, dWkv, d, 2 * d, d, nk, accumulate: true);
                Gemm(dQc, d, 1, (float*)wq, d, dxc, d, n, d, d, accumulate: true);
                // Self-attention: k and v came from x too (dy = dx); cross: dy is written here.
                Gemm(dKvc, 2 * d, 1, (float*)wkv, d, (float*)dy + k0 * d, d, nk, d, 2 * d, accumulate: self);
            });
            using var sums = SumChunks(partialT);
            var bias = 4L * d * d;
            return new Gradients(Slice(sums, 0, d, d), Slice(sums, bias, d), Slice(sums, (long)d * d, 2 * d, d), Slice(sums, bias + d, 2 * d),
                Slice(sums, 3L * d * d, d, d), Slice(sums, bias + 3 * d, d), Slice(sums, bias + 4 * d, d), Slice(sums, bias + 5 * d, d));
        }
    }
}
