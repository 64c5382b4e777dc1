using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using static LSVCR.Modeling.Cpu.CpuKernels;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LSVCR.Modeling.Cpu;

/// <summary>
/// Mean cross-entropy of u·vᵀ against targets — the Rec full softmax of MODEL.md §4 over every video — as one
/// autograd node over blocks of <see cref="BlockRows"/> candidates: the block's scores (<see cref="CpuKernels.Gemm"/>),
/// their per-query maxima and exponential sums forward; backward the block's softmax gradient and both products
/// (dv for the block's rows, a partial du), while the block sits in L2.
/// <para>Why: with <c>F.cross_entropy</c> the [512, 20,000] scores (41 MB, the step's largest tensor) are read by
/// log_softmax, which writes a second [B, V] tensor; backward fills a third with zeros for the one-hot, and the
/// softmax backward reads two and writes the gradient. With libtorch GEMMs around a log-sum-exp pass (the previous
/// form of this node) the scores were still written by one MKL call at ≈ 90 GFLOPS, re-read by the log-sum-exp, and
/// the gradient [B, V] written and read twice by two more. Here the scores are written once and read once, the
/// gradient never leaves L2. No package offers it for TorchSharp, hence this kernel.</para>
/// <para>The scores are kept transposed, [V, B]: a block of candidate rows is then one GEMM with u packed as B, and
/// both backward products read the block through strides. Each query's log-sum-exp is combined from the blocks'
/// (max, Σ exp(s − max)) in block order, and du from per-block partials in block order, so neither depends on the
/// thread count.</para>
/// Saved for backward: u, v, the transposed scores and the per-query log-sum-exp.
/// </summary>
internal sealed class SoftmaxCrossEntropy : autograd.SingleTensorFunction<SoftmaxCrossEntropy>
{
    public override string Name => nameof(SoftmaxCrossEntropy);

    /// <summary>Candidates per block: a multiple of the 6-row tile; at 256 queries the block's scores are 240 KB.</summary>
    internal const int BlockRows = 240;

    /// <param name="u">[B, d] queries (any scale already applied).</param>
    /// <param name="v">[V, d] candidates.</param>
    /// <param name="target">[B] int64 indices into v.</param>
    public static Tensor Loss(Tensor u, Tensor v, Tensor target)
    {
        if (u.dim() != 2 || v.dim() != 2 || u.shape[1] != v.shape[1] || target.shape.Length != 1 || target.shape[0] != u.shape[0])
            throw new ArgumentException($"SoftmaxCrossEntropy: u [{string.Join(", ", u.shape)}], v [{string.Join(", ", v.shape)}] and target [{string.Join(", ", target.shape)}] do not fit.");
        if (target.numel() > 0 && (target.min().item<long>() < 0 || target.max().item<long>() >= v.shape[0]))
            throw new ArgumentException($"SoftmaxCrossEntropy: a target is outside the {v.shape[0]} candidates.", nameof(target));
        if (u.dtype != ScalarType.Float32 || v.dtype != ScalarType.Float32 || u.shape[0] == 0)
            return F.cross_entropy(u.matmul(v.t()), target);
        return apply(u.contiguous(), v.contiguous(), target.to(ScalarType.Int64).contiguous());
    }

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var (u, v, target) = ((Tensor)vars[0], (Tensor)vars[1], (Tensor)vars[2]);
        var scoresT = empty(v.shape[0], u.shape[0], dtype: ScalarType.Float32);
        var lse = empty(u.shape[0], dtype: ScalarType.Float32);
        var loss = Kernels.Forward(u.detach(), v.detach(), target, scoresT, lse);
        ctx.save_for_backward([u, v, scoresT, lse, target]);
        return tensor(loss);
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
    {
        var saved = ctx.get_saved_variables();
        var (u, v, scoresT, lse, target) = (saved[0], saved[1], saved[2], saved[3], saved[4]);
        var scale = gradOutput.to(ScalarType.Float32).item<float>() / u.shape[0];
        var (du, dv) = Kernels.Backward(u.detach(), v.detach(), scoresT, lse, target, scale);
        return [du, dv, null!];
    }

    private static unsafe class Kernels
    {
        private static int Blocks(long candidates) => (int)((candidates + BlockRows - 1) / BlockRows);

        /// <summary>Sᵀ = v·uᵀ block by block, each block's per-query max and Σ exp(s − max), then lse per query and
        /// mean_b (lse[b] − s[target[b], b]) summed in query order.</summary>
        public static float Forward(Tensor uT, Tensor vT, Tensor targetT, Tensor scoresT, Tensor lseT)
        {
            var (b, d, n) = ((int)uT.shape[0], (int)uT.shape[1], (int)vT.shape[0]);
            using var ut = uT.t().contiguous();
            using var packedT = empty(PackedSize(d, b), dtype: ScalarType.Float32);
            Pack(Ptr(ut), b, d, b, Ptr(packedT));
            var blocks = Blocks(n);
            using var partialT = empty(blocks, 2, b, dtype: ScalarType.Float32); // per block: max | Σ exp(s − max)
            var (v, packed, s, partial) = ((nint)Ptr(vT), (nint)Ptr(packedT), (nint)Ptr(scoresT), (nint)Ptr(partialT));
            ForEach(blocks, 0, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (k, _) =>
            {
                var (j0, rows) = (k * BlockRows, Math.Min(BlockRows, n - k * BlockRows));
                var block = (float*)s + (long)j0 * b;
                GemmPacked((float*)v + (long)j0 * d, d, 1, (float*)packed, d, block, b, rows, b, d);
                var max = (float*)partial + (long)k * 2 * b;
                var sum = max + b;
                new Span<float>(max, b).Fill(float.NegativeInfinity);
                for (var j = 0; j < rows; j++) MaxInto(max, block + (long)j * b, b);
                new Span<float>(sum, b).Clear();
                for (var j = 0; j < rows; j++) AddExp(sum, block + (long)j * b, max, b);
            });
            var lse = lseT.data<float>();
            var p = (float*)partial;
            var t = targetT.data<long>();
            var total = 0.0;
            for (var q = 0; q < b; q++)
            {
                var m = float.NegativeInfinity;
                for (var k = 0; k < blocks; k++) m = MathF.Max(m, p[(long)k * 2 * b + q]);
                var sum = 0f;
                for (var k = 0; k < blocks; k++) sum += p[((long)k * 2 + 1) * b + q] * MathF.Exp(p[(long)k * 2 * b + q] - m);
                lse[q] = m + MathF.Log(sum);
                total += lse[q] - ((float*)s)[t[q] * b + q];
            }
            return (float)(total / b);
        }

        /// <summary>Per block: dSᵀ = scale·(exp(Sᵀ − lse) − one-hot), dv[block] = dSᵀ·u, du partial = (dSᵀ)ᵀ·v[block];
        /// du is the partials' sum in block order.</summary>
        public static (Tensor Du, Tensor Dv) Backward(Tensor uT, Tensor vT, Tensor scoresT, Tensor lseT, Tensor targetT, float scale)
        {
            var (b, d, n) = ((int)uT.shape[0], (int)uT.shape[1], (int)vT.shape[0]);
            var blocks = Blocks(n);
            var dvT = empty(n, d, dtype: ScalarType.Float32);
            using var partialT = empty(blocks, (long)b * d, dtype: ScalarType.Float32);
            var (u, v, s, lse, dv, partial) = ((nint)Ptr(uT), (nint)Ptr(vT), (nint)Ptr(scoresT), (nint)Ptr(lseT), (nint)Ptr(dvT), (nint)Ptr(partialT));
            var t = targetT.data<long>().ToArray();
            ForEach(blocks, BlockRows * b, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (k, scratch) =>
            {
                var (j0, rows) = (k * BlockRows, Math.Min(BlockRows, n - k * BlockRows));
                var dS = (float*)scratch;
                for (var j = 0; j < rows; j++) WeightedExp((float*)s + (long)(j0 + j) * b, (float*)lse, scale, b, dS + (long)j * b);
                for (var q = 0; q < b; q++)
                    if (t[q] >= j0 && t[q] < j0 + rows) dS[(t[q] - j0) * b + q] -= scale;
                Gemm(dS, b, 1, (float*)u, d, (float*)dv + (long)j0 * d, d, rows, d, b);
                Gemm(dS, 1, b, (float*)v + (long)j0 * d, d, (float*)partial + (long)k * b * d, d, b, d, rows);
            });
            using var du = SumChunks(partialT);
            return (du.view(b, d).clone(), dvT);
        }

        /// <summary>dst[t] = w · exp(src[t] − lse[t]).</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void WeightedExp(float* src, float* lse, float w, int n, float* dst)
        {
            var t = 0;
            if (Avx512F.IsSupported)
            {
                var wv = Vector512.Create(w);
                for (; t + 16 <= n; t += 16) (wv * Exp(Vector512.Load(src + t) - Vector512.Load(lse + t))).Store(dst + t);
            }
            for (; t < n; t++) dst[t] = w * MathF.Exp(src[t] - lse[t]);
        }
    }
}
