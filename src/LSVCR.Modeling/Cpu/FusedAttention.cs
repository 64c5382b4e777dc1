using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using static LSVCR.Modeling.Cpu.CpuKernels;
using static TorchSharp.torch;

namespace LSVCR.Modeling.Cpu;

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
/// <para>Training runs these per-example kernels inside <see cref="FusedMultiHeadAttention"/>'s chunks (with the
/// projections, out_linear and the residual norm around them); this node runs the core alone, so tests can hold it
/// against the formula directly (long histories, extreme scores, one query).</para>
/// </summary>
internal sealed class FusedAttention : autograd.SingleTensorFunction<FusedAttention>
{
    public override string Name => nameof(FusedAttention);

    /// <param name="SkipHidden">Skip the keys after each row's last visible key (exact, see Kernels); false computes
    /// every key, for the tests that hold the two bit for bit.</param>
    internal sealed record Spec(int Heads, double Dropout, bool SelfAttention, bool SkipHidden = true);

    /// <summary>Self-attention over <paramref name="qkv"/> [B, L, 3d] (each row q | k | v, heads contiguous inside
    /// each); <paramref name="mask"/> additive [B, L, L] or [B, 1, L]. Returns the context [B, L, d].</summary>
    public static Tensor Self(Tensor qkv, Tensor mask, int heads, double dropout, bool skipHidden = true) =>
        apply(qkv.contiguous(), null!, Mask3(mask, qkv.shape[0], qkv.shape[1]), new Spec(heads, dropout, true, skipHidden));

    /// <summary>Cross-attention of <paramref name="q"/> [B, Lq, d] over <paramref name="kv"/> [B, Lk, 2d] (each row
    /// k | v); <paramref name="mask"/> additive [B, Lq, Lk] or [B, 1, Lk]. Returns the context [B, Lq, d].</summary>
    public static Tensor Cross(Tensor q, Tensor kv, Tensor mask, int heads, double dropout, bool skipHidden = true) =>
        apply(q.contiguous(), kv.contiguous(), Mask3(mask, q.shape[0], q.shape[1]), new Spec(heads, dropout, false, skipHidden));

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
        Kernels.Forward(g, q, kv, mask, output, probs, seed, spec.Dropout, spec.SkipHidden);
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
            Kernels.Backward(g, q, kv, probs, dOut, dQkv, dQkv, seed, spec.Dropout, spec.SkipHidden);
            return [dQkv, null!, null!, null!];
        }
        var dQ = empty(g.Batch, g.Lq, g.D, dtype: ScalarType.Float32);
        var dKv = empty(g.Batch, g.Lk, 2 * g.D, dtype: ScalarType.Float32);
        Kernels.Backward(g, q, kv, probs, dOut, dQ, dKv, seed, spec.Dropout, spec.SkipHidden);
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

    /// <summary>The per-(example, head) loops (also run inside <see cref="FusedMultiHeadAttention"/>'s blocks);
    /// scratch rows are padded to whole vectors.</summary>
    internal static unsafe class Kernels
    {
        public static void Forward(Geometry g, Tensor qT, Tensor kvT, Tensor maskT, Tensor outT, Tensor probsT, ulong seed, double p, bool skipHidden)
        {
            var args = new Args(g, Ptr(qT), Ptr(kvT), Ptr(maskT), Ptr(probsT), Ptr(outT), null, null, seed, p, skipHidden);
            ForEach(g.Batch, ForwardScratch(g), (b, scratch) => ForwardExample(args, b, (float*)scratch));
        }

        /// <summary>dQ into <paramref name="dQT"/> rows (stride QStride, self: the q columns of dQKV), dK/dV into
        /// <paramref name="dKvT"/> rows (stride KvStride, at KOffset/VOffset). Every element of both is written.</summary>
        public static void Backward(Geometry g, Tensor qT, Tensor kvT, Tensor probsT, Tensor dOutT, Tensor dQT, Tensor dKvT, ulong seed, double p, bool skipHidden)
        {
            var args = new Args(g, Ptr(qT), Ptr(kvT), null, Ptr(probsT), Ptr(dOutT), Ptr(dQT), Ptr(dKvT), seed, p, skipHidden);
            ForEach(g.Batch, BackwardScratch(g), (b, scratch) => BackwardExample(args, b, (float*)scratch));
        }

        /// <summary>Floats of scratch <see cref="ForwardExample"/> needs.</summary>
        public static int ForwardScratch(Geometry g) => g.HeadDim * Width(g) + 2 * g.Lq * Width(g) + KeepFloats(g) + Width(g) + g.Lq;

        /// <summary>Floats of scratch <see cref="BackwardExample"/> needs.</summary>
        public static int BackwardScratch(Geometry g) => g.HeadDim * Width(g) + 3 * g.Lq * Width(g) + KeepFloats(g) + Width(g) + g.Lq;

        /// <summary>Row width of the per-head [·, Lk] scratch matrices: whole 16-float vectors, so <see cref="Gemm"/>
        /// tiles cover the key columns (results in the pad columns are never read).</summary>
        private static int Width(Geometry g) => (g.Lk + 15) & ~15;

        /// <summary>Offsets of the key rows for <see cref="GatherColumns"/>, one per column of Kᵀ/Vᵀ: the pad columns
        /// repeat the last key (finite values whose products are never read).</summary>
        private static int* KeyRows(Geometry g, int* rows)
        {
            for (var j = 0; j < Width(g); j++) rows[j] = Math.Min(j, g.Lk - 1) * g.KvStride;
            return rows;
        }

        /// <summary>Scratch for one head's dropout multipliers (see <see cref="KeepBlock"/>).</summary>
        private static int KeepFloats(Geometry g) => g.Lq * g.Lk + 3;

        /// <summary>One call's pointers and constants. Out = the context (forward) or its gradient (backward).</summary>
        internal sealed class Args(Geometry g, float* q, float* kv, float* mask, float* probs, float* output, float* dQ, float* dKv, ulong seed, double p,
            bool skipHidden = true)
        {
            public readonly bool SkipHidden = skipHidden;
            public readonly Geometry G = g;
            public readonly float* Q = q, Kv = kv, Mask = mask, Probs = probs, Out = output, DQ = dQ, DKv = dKv;
            public readonly ulong Seed = seed;
            public readonly bool Drop = p > 0;
            public readonly ushort Threshold = Dropout.Threshold(p);
            public readonly float KeepScale = Dropout.KeepScale(p);
            public readonly float Scale = (float)(1.0 / Math.Sqrt(g.HeadDim));

            /// <summary>Head h of example b: its dropout multipliers (generated into keepBuffer; null without
            /// dropout), the first K, V and Q element, its probabilities and its Out (context or its gradient) rows.</summary>
            public HeadRows Head(int b, int h, float* keepBuffer)
            {
                var (lq, lk, dh) = (G.Lq, G.Lk, G.HeadDim);
                var kv = Kv + (long)b * lk * G.KvStride + h * dh;
                return new HeadRows(
                    Drop ? KeepBlock(Seed, (long)(b * G.Heads + h) * lq * lk, lq * lk, Threshold, KeepScale, keepBuffer) : null,
                    kv + G.KOffset, kv + G.VOffset, Q + (long)b * lq * G.QStride + h * dh,
                    Probs + (long)(b * G.Heads + h) * lq * lk, Out + (long)b * lq * G.D + h * dh);
            }
        }

        internal readonly struct HeadRows(float* keep, float* k, float* v, float* q, float* probs, float* output)
        {
            public readonly float* Keep = keep, K = k, V = v, Q = q, Probs = probs, Out = output;
        }

        // Per (example, head), as small GEMMs (CpuKernels.Gemm) on matrices in L1: S = Q·Kᵀ, row softmax and
        // dropout, O = (P ⊙ keep)·V; backward dP = dO·Vᵀ, dS = softmax backward, dQ = dS·K, dV = (P ⊙ keep)ᵀ·dO,
        // dK = dSᵀ·Q (the transposes are strides, not copies).
        //
        // Keys after a query row's last visible key (RowEnds) are skipped: the causal mask hides half of every
        // encoder's score block, and pad keys sit at the end of a left-aligned history. Skipping is exact: a hidden
        // key's score is s/√dh − 1e6, its exp(score − row max) is exactly 0 whenever the row has a visible key and
        // the scores are far from 1e6 (ScoresBounded, checked per head), so its probability, its dropout product
        // and its gradient are all 0 in the full computation too, and the FMA chains of the GEMMs only lose
        // trailing (or, for dK/dV, leading) zero terms. Rows of C go in blocks of 8 (GemmRowBlock), each as wide
        // or as deep as its longest row needs.

        /// <summary>Bound on |q·k|/√dh under which a score masked by −1e6 cannot survive the softmax (see above).</summary>
        private const float ScoreBound = 1e5f;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public static void ForwardExample(Args a, int b, float* scratch)
        {
            var g = a.G;
            var (w, dh, lk, lq) = (Width(g), g.HeadDim, g.Lk, g.Lq);
            var kt = scratch;                    // Kᵀ of this head [dh, w]
            var s = kt + dh * w;                 // scores [Lq, w]
            var weights = s + lq * w;            // P ⊙ keep [Lq, w]
            var keepBuffer = weights + lq * w;   // dropout multipliers of this head [Lq, Lk]
            var keyRows = KeyRows(g, (int*)(keepBuffer + KeepFloats(g)));
            var maskEnds = keyRows + w;          // per query row: keys [0, end) can be visible
            MaskRowEnds(a, b, maskEnds);
            for (var h = 0; h < g.Heads; h++)
            {
                var head = a.Head(b, h, keepBuffer);
                float* keep = head.Keep, kBase = head.K, vBase = head.V, qBase = head.Q, pBase = head.Probs, oBase = head.Out;
                var skip = a.SkipHidden && ScoresBounded(g, head, a.Scale);
                GatherColumns(kBase, keyRows, w, dh, kt, w);
                for (var i0 = 0; i0 < lq; i0 += RowBlock)
                {
                    var rows = Math.Min(RowBlock, lq - i0);
                    // A short last block goes to Gemm's row-at-a-time path, whose sums depend on the width: always w.
                    var cols = skip && rows == RowBlock ? RoundUp16(BlockEnd(maskEnds, i0, rows)) : w;
                    GemmRowBlock(qBase + (long)i0 * g.QStride, g.QStride, 1, kt, w, s + i0 * w, w, rows, cols, dh);
                }
                for (var i = 0; i < lq; i++)
                {
                    var maskRow = a.Mask + ((long)b * g.MaskRows + (g.MaskRows == 1 ? 0 : i)) * lk;
                    var n = skip ? maskEnds[i] : lk;
                    Softmax(s + i * w, n, a.Scale, maskRow, pBase + i * lk);
                    if (n < lk) new Span<float>(pBase + i * lk + n, lk - n).Clear();
                    if (a.Drop) Multiply(pBase + i * lk, keep + i * lk, weights + i * w, lk);
                }
                var pv = a.Drop ? weights : pBase;
                var pvStride = a.Drop ? w : lk;
                for (var i0 = 0; i0 < lq; i0 += RowBlock)
                {
                    var rows = Math.Min(RowBlock, lq - i0);
                    var depth = skip ? BlockEnd(maskEnds, i0, rows) : lk;
                    GemmRowBlock(pv + i0 * pvStride, pvStride, 1, vBase, g.KvStride, oBase + (long)i0 * g.D, g.D, rows, dh, depth);
                }
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public static void BackwardExample(Args a, int b, float* scratch)
        {
            var g = a.G;
            var (w, dh, lk, lq) = (Width(g), g.HeadDim, g.Lk, g.Lq);
            var vt = scratch;                    // Vᵀ [dh, w]
            var dP = vt + dh * w;                // d(P ⊙ keep), then dP [Lq, w]
            var weights = dP + lq * w;           // P ⊙ keep [Lq, w]
            var dS = weights + lq * w;           // softmax-input gradient [Lq, w]
            var keepBuffer = dS + lq * w;        // dropout multipliers of this head [Lq, Lk]
            var keyRows = KeyRows(g, (int*)(keepBuffer + KeepFloats(g)));
            var ends = keyRows + w;              // per query row: probabilities beyond are 0
            for (var h = 0; h < g.Heads; h++)
            {
                var head = a.Head(b, h, keepBuffer);
                float* keep = head.Keep, kBase = head.K, vBase = head.V, qBase = head.Q, pBase = head.Probs, doBase = head.Out;
                if (a.SkipHidden) ProbabilityRowEnds(pBase, lq, lk, ends);
                else new Span<int>(ends, lq).Fill(lk);
                GatherColumns(vBase, keyRows, w, dh, vt, w);
                for (var i0 = 0; i0 < lq; i0 += RowBlock)
                {
                    var rows = Math.Min(RowBlock, lq - i0);
                    // Columns past the block's width are not computed; their probabilities are 0, and zeros keep the
                    // full-row passes below finite (a short last block: always w, as in the forward).
                    var cols = rows == RowBlock ? RoundUp16(BlockEnd(ends, i0, rows)) : w;
                    GemmRowBlock(doBase + (long)i0 * g.D, g.D, 1, vt, w, dP + i0 * w, w, rows, cols, dh);
                    if (cols < lk)
                        for (var i = i0; i < i0 + rows; i++) new Span<float>(dP + i * w + cols, lk - cols).Clear();
                }
                for (var i = 0; i < lq; i++)
                {
                    var pRow = pBase + i * lk;
                    var dPRow = dP + i * w;
                    if (a.Drop)
                    {
                        Multiply(pRow, keep + i * lk, weights + i * w, lk);
                        Multiply(dPRow, keep + i * lk, dPRow, lk);
                    }
                    SoftmaxBackward(pRow, dPRow, lk, a.Scale, dS + i * w);
                }
                var pv = a.Drop ? weights : pBase;
                var pvStride = a.Drop ? w : lk;
                var dKv = a.DKv + (long)b * lk * g.KvStride + h * dh;
                var dQ = a.DQ + (long)b * lq * g.QStride + h * dh;
                for (var i0 = 0; i0 < lq; i0 += RowBlock)
                {
                    var rows = Math.Min(RowBlock, lq - i0);
                    GemmRowBlock(dS + i0 * w, w, 1, kBase, g.KvStride, dQ + (long)i0 * g.QStride, g.QStride, rows, dh, BlockEnd(ends, i0, rows));
                }
                // dV and dK: key rows j read the queries that can see them, i ≥ first (leading zero terms skipped; an
                // even start keeps the pairing of terms of the row-at-a-time path, which column remainders also take).
                for (var j0 = 0; j0 < lk; j0 += RowBlock)
                {
                    var keys = Math.Min(RowBlock, lk - j0);
                    var first = FirstQuery(ends, lq, j0) & ~1;
                    var depth = lq - first;
                    float* pvA = pv + first * pvStride + j0, dSA = dS + first * w + j0;
                    float* doB = doBase + (long)first * g.D, qB = qBase + (long)first * g.QStride;
                    float* dV = dKv + (long)j0 * g.KvStride + g.VOffset, dK = dKv + (long)j0 * g.KvStride + g.KOffset;
                    GemmRowBlock(pvA, 1, pvStride, doB, g.D, dV, g.KvStride, keys, dh, depth);
                    GemmRowBlock(dSA, 1, w, qB, g.QStride, dK, g.KvStride, keys, dh, depth);
                }
            }
        }

        /// <summary>Per query row of example b: 1 + its last key whose mask is above <see cref="Masks.Hidden"/>, or
        /// all keys when the row has no clearly visible key (mask ≥ −1e5): such a row keeps the reference's
        /// near-uniform weights over all keys.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void MaskRowEnds(Args a, int b, int* ends)
        {
            var g = a.G;
            var rows = g.MaskRows == 1 ? 1 : g.Lq;
            for (var i = 0; i < rows; i++)
            {
                var m = a.Mask + ((long)b * g.MaskRows + i) * g.Lk;
                var (end, visible) = (0, false);
                if (Avx512F.IsSupported)
                    for (var j = 0; j < g.Lk; j += 16)
                    {
                        var v = j + 16 <= g.Lk ? Vector512.Load(m + j) : Avx512F.MaskLoad(m + j, Tail(g.Lk - j), Vector512.Create(float.NegativeInfinity));
                        var above = Vector512.GreaterThan(v, Vector512.Create(Masks.Hidden)).ExtractMostSignificantBits();
                        if (above != 0) end = j + 64 - BitOperations.LeadingZeroCount(above);
                        visible |= Vector512.GreaterThanOrEqualAny(v, Vector512.Create(-1e5f));
                    }
                else
                    for (var j = 0; j < g.Lk; j++)
                    {
                        if (m[j] > Masks.Hidden) end = j + 1;
                        if (m[j] >= -1e5f) visible = true;
                    }
                ends[i] = visible ? end : g.Lk;
            }
            for (var i = rows; i < g.Lq; i++) ends[i] = ends[0];
        }

        /// <summary>Per query row: 1 + its last nonzero probability (the forward wrote exact zeros past its row end).</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void ProbabilityRowEnds(float* probs, int lq, int lk, int* ends)
        {
            for (var i = 0; i < lq; i++)
            {
                var row = probs + i * lk;
                var j = lk;
                if (Avx512F.IsSupported)
                {
                    var end = 0;
                    for (var c = (lk - 1) & ~15; c >= 0; c -= 16)
                    {
                        var v = c + 16 <= lk ? Vector512.Load(row + c) : Avx512F.MaskLoad(row + c, Tail(lk - c), Vector512<float>.Zero);
                        var nonzero = (~Vector512.Equals(v, Vector512<float>.Zero)).ExtractMostSignificantBits();
                        if (nonzero == 0) continue;
                        end = c + 64 - BitOperations.LeadingZeroCount(nonzero);
                        break;
                    }
                    j = end;
                }
                else
                    while (j > 0 && row[j - 1] == 0f) j--;
                ends[i] = j;
            }
        }

        /// <summary>True when every |q·k|·scale of this head is below <see cref="ScoreBound"/>, from
        /// |q·k| ≤ dh·max|q|·max|k| (false for non-finite inputs), so skipping hidden keys is exact.</summary>
        private static bool ScoresBounded(Geometry g, HeadRows head, float scale) =>
            g.HeadDim * AbsMax(head.Q, g.QStride, g.Lq, g.HeadDim) * AbsMax(head.K, g.KvStride, g.Lk, g.HeadDim) * scale < ScoreBound;

        /// <summary>max |x| over n rows of <paramref name="cols"/> floats; NaN when any is NaN.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static float AbsMax(float* x, int stride, int n, int cols)
        {
            var (max, nan) = (Vector512<float>.Zero, Vector512<float>.Zero);
            var scalar = 0f;
            for (var r = 0; r < n; r++)
            {
                var row = x + (long)r * stride;
                var j = 0;
                if (Vector512.IsHardwareAccelerated)
                    for (; j + 16 <= cols; j += 16)
                    {
                        var v = Vector512.Load(row + j);
                        max = Vector512.Max(max, Vector512.Abs(v));
                        nan |= ~Vector512.Equals(v, v);
                    }
                for (; j < cols; j++) scalar = float.IsNaN(row[j]) ? float.NaN : MathF.Max(scalar, MathF.Abs(row[j]));
            }
            if (nan != Vector512<float>.Zero || float.IsNaN(scalar)) return float.NaN;
            return MathF.Max(scalar, HorizontalMax(max));
        }

        private static int BlockEnd(int* ends, int i0, int rows)
        {
            var end = 0;
            for (var i = i0; i < i0 + rows; i++) end = Math.Max(end, ends[i]);
            return end;
        }

        /// <summary>The first query row that reads key j0 or later (lq when none does).</summary>
        private static int FirstQuery(int* ends, int lq, int j0)
        {
            for (var i = 0; i < lq; i++)
                if (ends[i] > j0) return i;
            return lq;
        }

        private static int RoundUp16(int n) => (n + 15) & ~15;

        /// <summary>Scores → probabilities in the reference's order: ×scale (rounded), + mask, − max, exp, / sum.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void Softmax(float* s, int n, float scale, float* mask, float* probs)
        {
            if (Avx512F.IsSupported)
            {
                Softmax512(s, n, scale, mask, probs);
                return;
            }
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
            // Exp and sum in fixed lanes (not TensorPrimitives, whose order and scalar/vector split depend on n): a row
            // cut at its last visible key then gives the same bits as the whole row, as the AVX-512 path does.
            var chunk = stackalloc float[16];
            for (j = 0; j < n; j += 16)
            {
                var m = Math.Min(16, n - j);
                for (var l = 0; l < 16; l++) chunk[l] = l < m ? s[j + l] - max : float.NegativeInfinity;
                Exp(Vector512.Load(chunk)).Store(chunk);
                for (var l = 0; l < m; l++) s[j + l] = chunk[l];
            }
            TensorPrimitives.Multiply(new ReadOnlySpan<float>(s, n), 1f / LaneSum(s, null, n), new Span<float>(probs, n));
        }

        /// <summary>Σ a[j] (· b[j] when given) over j &lt; n in eight fixed lanes (element j into lane j mod 8, in order),
        /// then the lanes in order: zero terms past a row's last visible key change no bit.</summary>
        private static float LaneSum(float* a, float* b, int n)
        {
            var acc = Vector256<float>.Zero;
            var j = 0;
            for (; j + 8 <= n; j += 8) acc += b == null ? Vector256.Load(a + j) : Vector256.Load(a + j) * Vector256.Load(b + j);
            if (j < n)
            {
                var t = stackalloc float[8];
                for (var l = 0; l < 8; l++) t[l] = j + l < n ? (b == null ? a[j + l] : a[j + l] * b[j + l]) : 0f;
                acc += Vector256.Load(t);
            }
            var sum = 0f;
            for (var l = 0; l < 8; l++) sum += acc.GetElement(l);
            return sum;
        }

        /// <summary><see cref="Softmax"/> in 16-float vectors with masked tails: one pass for scale, mask and max,
        /// one for exp and sum, one for the normalised store (the score row has room up to a whole vector).</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void Softmax512(float* s, int n, float scale, float* mask, float* probs)
        {
            var scaleV = Vector512.Create(scale);
            var minusInf = Vector512.Create(float.NegativeInfinity);
            var maxV = minusInf;
            var j = 0;
            for (; j + 16 <= n; j += 16)
            {
                var v = Vector512.Load(s + j) * scaleV + Vector512.Load(mask + j); // two roundings, as mul_ then add_
                v.Store(s + j);
                maxV = Vector512.Max(maxV, v);
            }
            var tail = Tail(n - j);
            if (j < n)
            {
                var v = Vector512.Load(s + j) * scaleV + Avx512F.MaskLoad(mask + j, tail, minusInf);
                v.Store(s + j);
                maxV = Vector512.Max(maxV, v);
            }
            var max = Vector512.Create(HorizontalMax(maxV));
            var sumV = Vector512<float>.Zero;
            for (j = 0; j < n; j += 16)
            {
                var e = Exp(Vector512.Load(s + j) - max); // tail lanes are −∞ → 0
                e.Store(s + j);
                sumV += e;
            }
            var inv = Vector512.Create(1f / Vector512.Sum(sumV));
            for (j = 0; j + 16 <= n; j += 16) (Vector512.Load(s + j) * inv).Store(probs + j);
            if (j < n) Avx512F.MaskStore(probs + j, tail, Vector512.Load(s + j) * inv);
        }

        /// <summary>ds = P ⊙ (dP − Σ P·dP) · scale (softmax backward, then the 1/√dh of the scores).</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void SoftmaxBackward(float* p, float* dP, int n, float scale, float* ds)
        {
            var dot = Avx512F.IsSupported ? TensorPrimitives.Dot(new ReadOnlySpan<float>(p, n), new ReadOnlySpan<float>(dP, n)) : LaneSum(p, dP, n);
            var j = 0;
            if (Avx512F.IsSupported)
            {
                var (dot16, scale16) = (Vector512.Create(dot), Vector512.Create(scale));
                for (; j + 16 <= n; j += 16) (Vector512.Load(p + j) * (Vector512.Load(dP + j) - dot16) * scale16).Store(ds + j);
                if (j < n)
                {
                    var tail = Tail(n - j);
                    var (pt, dPt) = (Avx512F.MaskLoad(p + j, tail, Vector512<float>.Zero), Avx512F.MaskLoad(dP + j, tail, Vector512<float>.Zero));
                    Avx512F.MaskStore(ds + j, tail, pt * (dPt - dot16) * scale16);
                }
                return;
            }
            var (dotV, scaleV) = (Vector256.Create(dot), Vector256.Create(scale));
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
