using System.Runtime.CompilerServices;
using static LSVCR.Modeling.Cpu.CpuKernels;
using static TorchSharp.torch;

namespace LSVCR.Modeling.Cpu;

/// <summary>
/// y = a·W_aᵀ (+ b·W_bᵀ) (+ bias) — llm_adapter, pc_merge (title half plus the folded comment map) and
/// p_linear/c_linear over their two halves — as an autograd node whose forward and input gradients run on
/// <see cref="CpuKernels.Gemm"/>; the weight gradients (dYᵀ·x over all rows) stay with libtorch's GEMM.
/// <para>Why: at these shapes (64 output columns, depth 64 or 256, tens of thousands of rows) MKL's sgemm ran at
/// 25–50 GFLOPS on one core and did not scale to two (the 20,000-title table: 6.6–7.9 ms; the depth-64 layers
/// ≈ 24 GFLOPS in a profile of the step's input and head layers), the 6 × 64 register tiles at ≈ 140; the weight
/// gradient, whose depth is the row count, is where MKL's blocking wins (4.4 vs 5.8 ms, docs/model.md). With two
/// inputs the second product accumulates onto the first, so no concatenation and no sum pass. No package offers a
/// faster small-N GEMM for TorchSharp, hence this node.</para>
/// </summary>
internal sealed class TiledLinear : autograd.SingleTensorFunction<TiledLinear>
{
    public override string Name => nameof(TiledLinear);

    /// <summary>Rows per work item (a multiple of the 6-row tile).</summary>
    internal const int ChunkRows = 384;

    /// <summary>x·Wᵀ + bias for float32 x [..., K], W [N, K], bias [N] or null; libtorch's linear for other dtypes.</summary>
    public static Tensor Apply(Tensor x, Tensor weight, Tensor? bias) => Apply(x, weight, null, null, bias);

    /// <summary>a·W_aᵀ + b·W_bᵀ + bias (<paramref name="b"/> and <paramref name="weightB"/> both or neither), a and
    /// b [..., K_a|K_b] with the same leading shape; libtorch's linear for other dtypes.</summary>
    public static Tensor Apply(Tensor a, Tensor weightA, Tensor? b, Tensor? weightB, Tensor? bias)
    {
        if (!Fits(a, weightA, bias) || (b is null) != (weightB is null) || (b is not null && (!Fits(b, weightB!, bias)
            || weightB!.shape[0] != weightA.shape[0] || !b.shape[..^1].SequenceEqual(a.shape[..^1]))))
        {
            var y = TorchSharp.torch.nn.functional.linear(a, weightA, bias);
            return b is null ? y : y.add(TorchSharp.torch.nn.functional.linear(b, weightB!, null));
        }
        var shape = a.shape[..^1].Append(weightA.shape[0]).ToArray();
        var flatA = a.reshape(-1, a.shape[^1]).contiguous();
        var flatB = b?.reshape(-1, b.shape[^1]).contiguous();
        return apply(flatA, weightA, flatB!, weightB!, bias!).view(shape);
    }

    private static bool Fits(Tensor x, Tensor w, Tensor? bias) =>
        x.dtype == ScalarType.Float32 && w.dtype == ScalarType.Float32 && (bias is null || bias.dtype == ScalarType.Float32)
        && x.dim() >= 1 && w.dim() == 2 && x.shape[^1] == w.shape[1] && (bias is null || bias.shape.SequenceEqual([w.shape[0]]));

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var (a, wa, b, wb, bias) = ((Tensor)vars[0], (Tensor)vars[1], (Tensor?)vars[2], (Tensor?)vars[3], (Tensor?)vars[4]);
        var y = empty(a.shape[0], wa.shape[0], dtype: ScalarType.Float32);
        using var waT = wa.detach().t().contiguous();
        using var wbT = wb?.detach().t().contiguous();
        using var biasC = bias?.detach().contiguous();
        Kernels.Forward(a.detach(), waT, b?.detach(), wbT, biasC, y);
        ctx.save_for_backward([a, wa, b ?? empty(0), wb ?? empty(0)]);
        ctx.save_data("flags", (b is not null, bias is not null, a.requires_grad, b?.requires_grad ?? false));
        return y;
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
    {
        var s = ctx.get_saved_variables();
        var (hasB, hasBias, aNeedsGrad, bNeedsGrad) = ((bool, bool, bool, bool))ctx.get_data("flags");
        var dy = gradOutput.to(ScalarType.Float32).contiguous();
        var (a, wa) = (s[0].detach(), s[1].detach().contiguous());
        var (b, wb) = hasB ? (s[2].detach(), s[3].detach().contiguous()) : (null, null);
        var da = aNeedsGrad ? Kernels.InputGradient(dy, wa) : null;
        var db = bNeedsGrad ? Kernels.InputGradient(dy, wb!) : null;
        return [da!, dy.t().mm(a), db!, hasB ? dy.t().mm(b!) : null!, hasBias ? dy.sum(dim: 0L) : null!];
    }

    private static unsafe class Kernels
    {
        public static void Forward(Tensor aT, Tensor waTT, Tensor? bT, Tensor? wbTT, Tensor? biasT, Tensor yT)
        {
            var (rows, ka, cols) = ((int)aT.shape[0], (int)aT.shape[1], (int)yT.shape[1]);
            var kb = bT is null ? 0 : (int)bT.shape[1];
            var (a, waT, y) = ((nint)Ptr(aT), (nint)Ptr(waTT), (nint)Ptr(yT));
            nint b = 0, wbT = 0;
            if (bT is not null) (b, wbT) = ((nint)Ptr(bT), (nint)Ptr(wbTT!));
            var bias = biasT is null ? 0 : (nint)Ptr(biasT);
            ForEach((rows + ChunkRows - 1) / ChunkRows, 0, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (c, _) =>
            {
                var (r0, n) = (c * ChunkRows, Math.Min(ChunkRows, rows - c * ChunkRows));
                var yc = (float*)y + (long)r0 * cols;
                Gemm((float*)a + (long)r0 * ka, ka, 1, (float*)waT, cols, yc, cols, n, cols, ka, bias: (float*)bias);
                if (b != 0) Gemm((float*)b + (long)r0 * kb, kb, 1, (float*)wbT, cols, yc, cols, n, cols, kb, accumulate: true);
            });
        }

        /// <summary>dX = dY·W [rows, K], W [N, K] as packed 64-column panels (its rows are K floats apart).</summary>
        public static Tensor InputGradient(Tensor dyT, Tensor wT)
        {
            var (rows, n, k) = ((int)dyT.shape[0], (int)wT.shape[0], (int)wT.shape[1]);
            var dxT = empty(rows, k, dtype: ScalarType.Float32);
            using var packedT = empty(PackedSize(n, k), dtype: ScalarType.Float32);
            Pack(Ptr(wT), k, n, k, Ptr(packedT));
            var (dy, packed, dx) = ((nint)Ptr(dyT), (nint)Ptr(packedT), (nint)Ptr(dxT));
            ForEach((rows + ChunkRows - 1) / ChunkRows, 0, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (c, _) =>
            {
                var (r0, m) = (c * ChunkRows, Math.Min(ChunkRows, rows - c * ChunkRows));
                GemmPacked((float*)dy + (long)r0 * n, n, 1, (float*)packed, n, (float*)dx + (long)r0 * k, k, m, k, n);
            });
            return dxT;
        }
    }
}
