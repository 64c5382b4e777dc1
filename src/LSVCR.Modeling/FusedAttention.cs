using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using static LSVCR.Modeling.CpuKernels;
using static TorchSharp.torch;

namespace LSVCR.Modeling;

/// <summary>
/// The attention core of MODEL.md §2.1 for training — softmax(Q·Kᵀ/√dh + mask), attention dropout, ·V — as one
/// autograd node with a hand-written forward and backward, for the short histories of this model (L ≤ a few hundred).
/// <para>Why: with libtorch ops the core is a dozen kernels per head-batch (two layout copies of q/k/v, two batched
/// GEMMs of 50×32 matrices, scale, mask add, softmax, dropout mask and multiply, the transpose back to [B, L, d]) and
/// twice that backward; at batch 512 it cost ≈ 65 ms of a layer's ≈ 100 ms on 2 cores, far above its arithmetic.
/// Here each (example, head) works on its own q/k/v rows read in place from the projection output, with everything
/// in L1, and writes the context already in [B, L, d] order. No package offers a fused CPU attention with dropout
/// for TorchSharp (libtorch's fused CPU kernel refuses dropout), hence this one.</para>
/// <para>Same arithmetic as the written-out reference: scores are rounded after the 1/√dh scale and then get the
/// additive mask (so fully masked rows behave as in the reference), softmax subtracts the row maximum, and the
/// dropout keep mask is <see cref="Dropout.KeepMask"/>'s stream over a [B, H, Lq, Lk] tensor with the same seed:
/// the kernel equals <c>Dropout.Apply(softmax(...), p)·V</c> drawn right after the same <c>manual_seed</c>.</para>
/// Saved for backward: the inputs, the softmax probabilities [B, H, Lq, Lk] and the dropout seed (the keep mask is
/// regenerated, not stored).
/// </summary>
internal sealed class FusedAttention : autograd.SingleTensorFunction<FusedAttention>
{
    public override string Name => nameof(FusedAttention);

    internal sealed record Spec(int Heads, double Dropout, bool SelfAttention);

    /// <summary>Self-attention over <paramref name="qkv"/> [B, L, 3d] (each row q | k | v, heads contiguous inside
    /// each); <paramref name="mask"/> additive [B, L, L] or [B, 1, L]. Returns the context [B, L, d].</summary>
    public static Tensor Self(Tensor qkv, Tensor mask, int heads, double dropout) =>
        apply(qkv.contiguous(), null!, Mask3(mask, qkv.shape[0], qkv.shape[1]), new Spec(heads, dropout, true));

    /// <summary>Cross-attention of <paramref name="q"/> [B, Lq, d] over <paramref name="kv"/> [B, Lk, 2d] (each row
    /// k | v); <paramref name="mask"/> additive [B, Lq, Lk] or [B, 1, Lk]. Returns the context [B, Lq, d].</summary>
    public static Tensor Cross(Tensor q, Tensor kv, Tensor mask, int heads, double dropout) =>
        apply(q.contiguous(), kv.contiguous(), Mask3(mask, q.shape[0], q.shape[1]), new Spec(heads, dropout, false));

    /// <summary>Masks arrive as [B, 1, Lq|1, Lk] (broadcast over heads); the kernel reads [B, Lq|1, Lk] rows.</summary>
    private static Tensor Mask3(Tensor mask, long batch, long lq)
    {
        var m = mask.dim() == 4 ? mask.squeeze(1) : mask;
        if (m.dim() != 3 || m.shape[0] != batch || (m.shape[1] != 1 && m.shape[1] != lq))
            throw new ArgumentException($"attention mask of shape [{string.Join(", ", mask.shape)}] does not broadcast to [{batch}, heads, {lq}, keys]");
        return m.to(ScalarType.Float32).contiguous();
    }

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var spec = (Spec)vars[3];
        var (q, kv, mask) = ((Tensor)vars[0], spec.SelfAttention ? (Tensor)vars[0] : (Tensor)vars[1], (Tensor)vars[2]);
        var g = Geometry.Of(q, kv, mask, spec);
        var seed = spec.Dropout > 0 ? Dropout.NextSeed() : 0UL;
        var output = empty(g.Batch, g.Lq, g.D, dtype: ScalarType.Float32);
        var probs = empty(g.Batch, g.Heads, g.Lq, g.Lk, dtype: ScalarType.Float32);
        Kernels.Forward(g, q, kv, mask, output, probs, seed, spec.Dropout);
        ctx.save_for_backward([q, kv, mask, probs]);
        ctx.save_data("seed", seed);
        ctx.save_data("spec", spec);
        return output;
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
    {
        var saved = ctx.get_saved_variables();
        var (q, kv, mask, probs) = (saved[0], saved[1], saved[2], saved[3]);
        var spec = (Spec)ctx.get_data("spec");
        var seed = (ulong)ctx.get_data("seed");
        var g = Geometry.Of(q, kv, mask, spec);
        var dOut = gradOutput.to(ScalarType.Float32).contiguous();
        if (spec.SelfAttention)
        {
            var dQkv = empty(g.Batch, g.Lq, 3 * g.D, dtype: ScalarType.Float32);
            Kernels.Backward(g, q, kv, probs, dOut, dQkv, dQkv, seed, spec.Dropout);
            return [dQkv, null!, null!, null!];
        }
        var dQ = empty(g.Batch, g.Lq, g.D, dtype: ScalarType.Float32);
        var dKv = empty(g.Batch, g.Lk, 2 * g.D, dtype: ScalarType.Float32);
        Kernels.Backward(g, q, kv, probs, dOut, dQ, dKv, seed, spec.Dropout);
        return [dQ, dKv, null!, null!];
    }

    /// <summary>Sizes and row layouts (in floats) of one call.</summary>
    internal readonly record struct Geometry(int Batch, int Heads, int HeadDim, int Lq, int Lk, int MaskRows,
        int QStride, int KvStride, int KOffset, int VOffset)
    {
        public int D => Heads * HeadDim;

        public static Geometry Of(Tensor q, Tensor kv, Tensor mask, Spec spec)
        {
            if (q.dtype != ScalarType.Float32 || kv.dtype != ScalarType.Float32)
                throw new ArgumentException("FusedAttention needs float32 inputs.");
            var (b, lq, lk) = ((int)q.shape[0], (int)q.shape[1], (int)kv.shape[1]);
            var d = spec.SelfAttention ? (int)q.shape[2] / 3 : (int)q.shape[2];
            if (d % spec.Heads != 0 || kv.shape[0] != b || kv.shape[2] != (spec.SelfAttention ? 3 * d : 2 * d))
                throw new ArgumentException($"FusedAttention: q [{string.Join(", ", q.shape)}] and kv [{string.Join(", ", kv.shape)}] do not fit {spec.Heads} heads.");
            if (mask.shape[2] != lk) throw new ArgumentException($"attention mask has {mask.shape[2]} keys, the keys have {lk}.");
            return spec.SelfAttention
                ? new Geometry(b, spec.Heads, d / spec.Heads, lq, lk, (int)mask.shape[1], 3 * d, 3 * d, d, 2 * d)
                : new Geometry(b, spec.Heads, d / spec.Heads, lq, lk, (int)mask.shape[1], d, 2 * d, 0, d);
        }
    }

    /// <summary>The per-(example, head) loops; scratch rows are padded to whole vectors.</summary>
    private static unsafe class Kernels
    {
        public static void Forward(Geometry g, Tensor qT, Tensor kvT, Tensor maskT, Tensor outT, Tensor probsT, ulong seed, double p)
        {
            var args = new Args(g, Ptr(qT), Ptr(kvT), Ptr(maskT), Ptr(probsT), Ptr(outT), null, null, seed, p);
            ForEach(g.Batch, g.HeadDim * Pad(g.Lk) + Pad(g.Lk) + KeepFloats(g), (b, scratch) => ForwardExample(args, b, (float*)scratch));
        }

        /// <summary>dQ into <paramref name="dQT"/> rows (stride QStride, self: the q columns of dQKV), dK/dV into
        /// <paramref name="dKvT"/> rows (stride KvStride, at KOffset/VOffset). Every element of both is written.</summary>
        public static void Backward(Geometry g, Tensor qT, Tensor kvT, Tensor probsT, Tensor dOutT, Tensor dQT, Tensor dKvT, ulong seed, double p)
        {
            var args = new Args(g, Ptr(qT), Ptr(kvT), null, Ptr(probsT), Ptr(dOutT), Ptr(dQT), Ptr(dKvT), seed, p);
            var pad = Pad(g.Lk);
            ForEach(g.Batch, g.HeadDim * pad + pad + 2 * g.Lq * pad + KeepFloats(g), (b, scratch) => BackwardExample(args, b, (float*)scratch));
        }

        /// <summary>Scratch for one head's dropout multipliers (see <see cref="KeepBlock"/>).</summary>
        private static int KeepFloats(Geometry g) => g.Lq * g.Lk + 3;

        /// <summary>One call's pointers and constants. Out = the context (forward) or its gradient (backward).</summary>
        private sealed class Args(Geometry g, float* q, float* kv, float* mask, float* probs, float* output, float* dQ, float* dKv, ulong seed, double p)
        {
            public readonly Geometry G = g;
            public readonly float* Q = q, Kv = kv, Mask = mask, Probs = probs, Out = output, DQ = dQ, DKv = dKv;
            public readonly ulong Seed = seed;
            public readonly bool Drop = p > 0;
            public readonly ushort Threshold = Dropout.Threshold(p);
            public readonly float KeepScale = Dropout.KeepScale(p);
            public readonly float Scale = (float)(1.0 / Math.Sqrt(g.HeadDim));
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void ForwardExample(Args a, int b, float* scratch)
        {
            var g = a.G;
            var pad = Pad(g.Lk);
            var kt = scratch;                    // Kᵀ of this head [dh, pad]
            var s = kt + g.HeadDim * pad;        // score row [pad]
            var keepBuffer = s + pad;            // dropout multipliers of this head [Lq, Lk]
            for (var h = 0; h < g.Heads; h++)
            {
                var keep = a.Drop ? KeepBlock(a.Seed, (long)(b * g.Heads + h) * g.Lq * g.Lk, g.Lq * g.Lk, a.Threshold, a.KeepScale, keepBuffer) : null;
                var kBase = a.Kv + (long)b * g.Lk * g.KvStride + g.KOffset + h * g.HeadDim;
                var vBase = a.Kv + (long)b * g.Lk * g.KvStride + g.VOffset + h * g.HeadDim;
                Transpose(kBase, g.KvStride, g.Lk, g.HeadDim, kt, pad);
                for (var i = 0; i < g.Lq; i++)
                {
                    var qRow = a.Q + ((long)b * g.Lq + i) * g.QStride + h * g.HeadDim;
                    var maskRow = a.Mask + ((long)b * g.MaskRows + (g.MaskRows == 1 ? 0 : i)) * g.Lk;
                    var row = (long)(b * g.Heads + h) * g.Lq + i;
                    var pRow = a.Probs + row * g.Lk;
                    WeightedRowSum(qRow, 1, g.HeadDim, kt, pad, pad, s);         // s = q_i · Kᵀ
                    Softmax(s, g.Lk, a.Scale, maskRow, pRow);
                    var weights = pRow;
                    if (a.Drop)
                    {
                        Multiply(pRow, keep + i * g.Lk, s, g.Lk);
                        weights = s;
                    }
                    WeightedRowSum(weights, 1, g.Lk, vBase, g.KvStride, g.HeadDim, a.Out + ((long)b * g.Lq + i) * g.D + h * g.HeadDim);
                }
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void BackwardExample(Args a, int b, float* scratch)
        {
            var g = a.G;
            var (pad, dh, lk) = (Pad(g.Lk), g.HeadDim, g.Lk);
            var vt = scratch;                    // Vᵀ [dh, pad]
            var dP = vt + dh * pad;              // [pad]
            var weights = dP + pad;              // P ⊙ keep, all query rows [Lq, pad]
            var dS = weights + g.Lq * pad;       // softmax-input gradient, all query rows [Lq, pad]
            var keepBuffer = dS + g.Lq * pad;    // dropout multipliers of this head [Lq, Lk]
            for (var h = 0; h < g.Heads; h++)
            {
                var keep = a.Drop ? KeepBlock(a.Seed, (long)(b * g.Heads + h) * g.Lq * g.Lk, g.Lq * g.Lk, a.Threshold, a.KeepScale, keepBuffer) : null;
                var kBase = a.Kv + (long)b * g.Lk * g.KvStride + g.KOffset + h * dh;
                var vBase = a.Kv + (long)b * g.Lk * g.KvStride + g.VOffset + h * dh;
                var qBase = a.Q + (long)b * g.Lq * g.QStride + h * dh;
                var doBase = a.Out + (long)b * g.Lq * g.D + h * dh;
                Transpose(vBase, g.KvStride, lk, dh, vt, pad);
                for (var i = 0; i < g.Lq; i++)
                {
                    var row = (long)(b * g.Heads + h) * g.Lq + i;
                    var pRow = a.Probs + row * lk;
                    var w = weights + i * pad;
                    var ds = dS + i * pad;
                    // d(P ⊙ keep)_ij = dO_i · V_j, dP = that ⊙ keep.
                    WeightedRowSum(doBase + (long)i * g.D, 1, dh, vt, pad, pad, dP);
                    if (a.Drop)
                    {
                        Multiply(pRow, keep + i * lk, w, lk);
                        Multiply(dP, keep + i * lk, dP, lk);
                    }
                    else new Span<float>(pRow, lk).CopyTo(new Span<float>(w, lk));
                    SoftmaxBackward(pRow, dP, lk, a.Scale, ds);
                    // dQ_i = Σ_j dS_ij K_j.
                    WeightedRowSum(ds, 1, lk, kBase, g.KvStride, dh, a.DQ + ((long)b * g.Lq + i) * g.QStride + h * dh);
                }
                // dV_j = Σ_i (P ⊙ keep)_ij dO_i, dK_j = Σ_i dS_ij Q_i: columns of the row buffers as weights.
                for (var j = 0; j < lk; j++)
                {
                    var at = a.DKv + ((long)b * g.Lk + j) * g.KvStride + h * dh;
                    WeightedRowSum(weights + j, pad, g.Lq, doBase, g.D, dh, at + g.VOffset);
                    WeightedRowSum(dS + j, pad, g.Lq, qBase, g.QStride, dh, at + g.KOffset);
                }
            }
        }

        /// <summary>Scores → probabilities in the reference's order: ×scale (rounded), + mask, − max, exp, / sum.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void Softmax(float* s, int n, float scale, float* mask, float* probs)
        {
            var j = 0;
            var maxV = Vector256.Create(float.NegativeInfinity);
            var scaleV = Vector256.Create(scale);
            for (; j + 8 <= n; j += 8)
            {
                var v = Vector256.Load(s + j) * scaleV + Vector256.Load(mask + j); // two roundings, as mul_ then add_
                v.Store(s + j);
                maxV = Vector256.Max(maxV, v);
            }
            var max = float.NegativeInfinity;
            for (var l = 0; l < Vector256<float>.Count; l++) max = MathF.Max(max, maxV.GetElement(l));
            for (; j < n; j++)
            {
                var v = s[j] * scale + mask[j];
                s[j] = v;
                if (v > max) max = v;
            }
            var row = new Span<float>(s, n);
            TensorPrimitives.Subtract(row, max, row);
            TensorPrimitives.Exp(row, row);
            TensorPrimitives.Multiply(row, 1f / TensorPrimitives.Sum(row), new Span<float>(probs, n));
        }

        /// <summary>ds = P ⊙ (dP − Σ P·dP) · scale (softmax backward, then the 1/√dh of the scores).</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void SoftmaxBackward(float* p, float* dP, int n, float scale, float* ds)
        {
            var dot = TensorPrimitives.Dot(new ReadOnlySpan<float>(p, n), new ReadOnlySpan<float>(dP, n));
            var (dotV, scaleV) = (Vector256.Create(dot), Vector256.Create(scale));
            var j = 0;
            for (; j + 8 <= n; j += 8) (Vector256.Load(p + j) * (Vector256.Load(dP + j) - dotV) * scaleV).Store(ds + j);
            for (; j < n; j++) ds[j] = p[j] * (dP[j] - dot) * scale;
        }

        /// <summary>The dropout multipliers of <paramref name="n"/> consecutive elements starting at flat index
        /// <paramref name="first"/> — the same SplitMix64 lanes as <see cref="Dropout.KeepMask"/> — written from
        /// <c>dst[first &amp; 3]</c> on (<paramref name="dst"/> needs n + 3 floats).
        /// Returns the pointer to element <paramref name="first"/>.</summary>
        private static float* KeepBlock(ulong seed, long first, int n, ushort threshold, float keepScale, float* dst)
        {
            Dropout.WriteKeep(seed, first >> 2, n + (first & 3), threshold, keepScale, dst);
            return dst + (first & 3);
        }
    }
}
