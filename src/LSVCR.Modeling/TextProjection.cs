using System.Runtime.CompilerServices;
using static LSVCR.Modeling.CpuKernels;
using static TorchSharp.torch;

namespace LSVCR.Modeling;

/// <summary>
/// y = x·Wᵀ (+ b) for the text projections (llm_adapter and pc_merge's folded comment map: [rows, TextDim] →
/// [rows, d]) as an autograd node whose forward runs on <see cref="CpuKernels.Gemm"/>; the backward (W's gradient,
/// xᵀ·dY over all rows, and x's when it needs one) stays with libtorch's GEMM.
/// <para>Why: at this shape (depth 256, 64 output columns, tens of thousands of rows) MKL's sgemm ran at ≈ 50 GFLOPS
/// on one core and did not scale to two (the 20,000-title table: 6.6–7.9 ms), the 6 × 64 register tiles at
/// ≈ 140; the weight gradient, whose depth is the row count, is where MKL's blocking wins (measured in docs/model.md).
/// No package offers a faster small-N GEMM for TorchSharp, hence this node.</para>
/// </summary>
internal sealed class TextProjection : autograd.SingleTensorFunction<TextProjection>
{
    public override string Name => nameof(TextProjection);

    /// <summary>Rows per work item (a multiple of the 6-row tile).</summary>
    internal const int ChunkRows = 384;

    /// <summary>x·Wᵀ + b for float32 x [..., K], W [N, K], b [N] or null; libtorch's linear for other dtypes.</summary>
    public static Tensor Apply(Tensor x, Tensor weight, Tensor? bias)
    {
        if (x.dtype != ScalarType.Float32 || weight.dtype != ScalarType.Float32 || (bias is not null && bias.dtype != ScalarType.Float32)
            || x.dim() < 1 || weight.dim() != 2 || x.shape[^1] != weight.shape[1] || (bias is not null && bias.shape[0] != weight.shape[0]))
            return TorchSharp.torch.nn.functional.linear(x, weight, bias);
        var shape = x.shape[..^1].Append(weight.shape[0]).ToArray();
        var flat = x.reshape(-1, x.shape[^1]).contiguous();
        return apply(flat, weight, bias!).view(shape);
    }

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var (x, w, b) = ((Tensor)vars[0], (Tensor)vars[1], (Tensor?)vars[2]);
        using var wT = w.detach().t().contiguous();
        var y = empty(x.shape[0], w.shape[0], dtype: ScalarType.Float32);
        using var bias = b?.detach().contiguous();
        Kernels.Forward(x.detach(), wT, bias, y);
        ctx.save_for_backward([x, w]);
        ctx.save_data("flags", (b is not null, x.requires_grad));
        return y;
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
    {
        var s = ctx.get_saved_variables();
        var (hasBias, xNeedsGrad) = ((bool, bool))ctx.get_data("flags");
        var (x, w) = (s[0].detach(), s[1].detach());
        var dy = gradOutput.to(ScalarType.Float32).contiguous();
        var dw = dy.t().mm(x);
        return [xNeedsGrad ? dy.mm(w) : null!, dw, hasBias ? dy.sum(dim: 0L) : null!];
    }

    private static unsafe class Kernels
    {
        public static void Forward(Tensor xT, Tensor wTT, Tensor? biasT, Tensor yT)
        {
            var (rows, depth, cols) = ((int)xT.shape[0], (int)xT.shape[1], (int)yT.shape[1]);
            var (x, wT, y) = ((nint)Ptr(xT), (nint)Ptr(wTT), (nint)Ptr(yT));
            var bias = biasT is null ? 0 : (nint)Ptr(biasT);
            ForEach((rows + ChunkRows - 1) / ChunkRows, 0, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (c, _) =>
            {
                var (r0, n) = (c * ChunkRows, Math.Min(ChunkRows, rows - c * ChunkRows));
                var yc = (float*)y + (long)r0 * cols;
                if (bias != 0) FillRows(yc, (float*)bias, n, cols);
                Gemm((float*)x + (long)r0 * depth, depth, 1, (float*)wT, cols, yc, cols, n, cols, depth, accumulate: bias != 0);
            });
        }
    }
}
