using System.Runtime.CompilerServices;
using static LSVCR.Modeling.CpuKernels;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LSVCR.Modeling;

/// <summary>
/// Mean cross-entropy of u·vᵀ against targets — the Rec full softmax of MODEL.md §4 over every video — as one
/// autograd node: libtorch GEMMs (MKL) for the scores and both gradients, and one pass over the [B, V] scores each
/// way for the rest.
/// <para>Why: with <c>F.cross_entropy</c> the [512, 20,000] scores (41 MB, the step's largest tensor) are read by
/// log_softmax, which writes a second [B, V] tensor; backward fills a third with zeros for the one-hot, and the
/// softmax backward reads two and writes the gradient. Here the forward keeps only a log-sum-exp per row and the
/// backward writes softmax − one-hot directly. No package offers it for TorchSharp, hence this kernel.</para>
/// Saved for backward: u, v, the scores and the per-row log-sum-exp.
/// </summary>
internal sealed class SoftmaxCrossEntropy : autograd.SingleTensorFunction<SoftmaxCrossEntropy>
{
    public override string Name => nameof(SoftmaxCrossEntropy);

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
        var scores = u.mm(v.t());
        var lse = empty(u.shape[0], dtype: ScalarType.Float32);
        var loss = Kernels.Forward(scores, target, lse);
        ctx.save_for_backward([u, v, scores, lse, target]);
        return tensor(loss);
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
    {
        var saved = ctx.get_saved_variables();
        var (u, v, scores, lse, target) = (saved[0], saved[1], saved[2], saved[3], saved[4]);
        var scale = gradOutput.to(ScalarType.Float32).item<float>() / scores.shape[0];
        var dScores = empty_like(scores);
        Kernels.Backward(scores, lse, target, scale, dScores);
        return [dScores.mm(v), dScores.t().mm(u), null!];
    }

    private static unsafe class Kernels
    {
        /// <summary>lse[b] = log Σ_j exp(s[b, j]); returns mean_b (lse[b] − s[b, target[b]]), summed in row order.</summary>
        public static float Forward(Tensor scoresT, Tensor targetT, Tensor lseT)
        {
            var (s, lse) = ((nint)Ptr(scoresT), (nint)Ptr(lseT));
            var (rows, n) = ((int)scoresT.shape[0], (int)scoresT.shape[1]);
            ForEach(rows, 0, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (b, _) => ((float*)lse)[b] = LogSumExp((float*)s + (long)b * n, n));
            var (l, t) = (lseT.data<float>(), targetT.data<long>());
            var total = 0.0;
            for (var b = 0; b < rows; b++) total += l[b] - ((float*)s)[(long)b * n + t[b]];
            return (float)(total / rows);
        }

        /// <summary>dS[b, j] = scale · (exp(s[b, j] − lse[b]) − [j = target[b]]).</summary>
        public static void Backward(Tensor scoresT, Tensor lseT, Tensor targetT, float scale, Tensor dT)
        {
            var (s, lse, d) = ((nint)Ptr(scoresT), (nint)Ptr(lseT), (nint)Ptr(dT));
            var t = targetT.data<long>().ToArray();
            var (rows, n) = ((int)scoresT.shape[0], (int)scoresT.shape[1]);
            ForEach(rows, 0, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (b, _) =>
            {
                var dst = (float*)d + (long)b * n;
                ScaledSoftmax((float*)s + (long)b * n, n, ((float*)lse)[b], scale, dst, accumulate: false);
                dst[t[b]] -= scale;
            });
        }
    }
}
