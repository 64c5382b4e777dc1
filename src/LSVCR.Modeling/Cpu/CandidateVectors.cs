using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using static LSVCR.Modeling.Cpu.CpuKernels;
using static TorchSharp.torch;

namespace LSVCR.Modeling.Cpu;

/// <summary>
/// The candidate vectors of all videos, normalize(gate·E + T) row by row (E the id embeddings, T the adapted titles,
/// either may be absent), as one autograd node: one pass forward, one pass back.
/// <para>Why: as libtorch ops it was a mul, an add and F.normalize (norm, clamp, expand, divide) over
/// [PhotoCount, d], and their backward passes plus a reduction for gate — ≈ 30 ms of CPU per Rec training step for
/// 1.3 M numbers, on the step's serial path. No package offers it for TorchSharp, hence this node.</para>
/// <para>Same formula as F.normalize: s / max(‖s‖, 1e-12); gate·E + T rounded as the written-out ops round it.
/// Gate's gradient is summed per fixed block of rows, then over the blocks in order (thread-count independent).</para>
/// Saved for backward: the output, 1/max(‖s‖, eps) per row, E and gate.
/// </summary>
internal sealed class CandidateVectors : autograd.SingleTensorFunction<CandidateVectors>
{
    public override string Name => nameof(CandidateVectors);

    private const float Eps = 1e-12f;

    /// <summary>Rows per work item and per partial sum of gate's gradient.</summary>
    internal const int ChunkRows = 1024;

    /// <summary>normalize(gate·<paramref name="ids"/> + <paramref name="titles"/>, dim −1) for [V, d] float32 tables
    /// (<paramref name="ids"/> with <paramref name="gate"/>, or neither; <paramref name="titles"/> or null); null
    /// for other dtypes, which the caller computes with the written-out ops.</summary>
    public static Tensor? TryApply(Tensor? ids, Tensor? gate, Tensor? titles)
    {
        var any = ids ?? titles;
        if (any is null || (ids is null) != (gate is null)) return null;
        if (new[] { ids, gate, titles }.Any(t => t is not null && t.dtype != ScalarType.Float32)) return null;
        if (any.dim() != 2 || (ids is not null && titles is not null && !ids.shape.SequenceEqual(titles.shape)) || (gate is not null && gate.numel() != 1))
            throw new ArgumentException($"CandidateVectors: id embeddings [{string.Join(", ", ids?.shape ?? [])}] and titles [{string.Join(", ", titles?.shape ?? [])}] must be the same [V, d] (and gate a scalar).");
        return apply(ids?.contiguous()!, gate!, titles?.contiguous()!);
    }

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var (ids, gate, titles) = ((Tensor?)vars[0], (Tensor?)vars[1], (Tensor?)vars[2]);
        var any = (ids ?? titles)!;
        var (rows, d) = ((int)any.shape[0], (int)any.shape[1]);
        var v = empty(rows, d, dtype: ScalarType.Float32);
        var inverse = empty(rows, dtype: ScalarType.Float32);
        var gateValue = gate is null ? 0f : gate.detach().item<float>();
        Kernels.Forward(ids?.detach(), gateValue, titles?.detach(), v, inverse);
        ctx.save_for_backward([v, inverse, ids?.detach() ?? empty(0), gate?.detach() ?? empty(0)]);
        ctx.save_data("flags", (ids is not null, titles is not null));
        return v;
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
    {
        var s = ctx.get_saved_variables();
        var (hasIds, hasTitles) = ((bool, bool))ctx.get_data("flags");
        var dv = gradOutput.to(ScalarType.Float32).contiguous();
        var dSum = empty_like(dv);
        var dIds = hasIds ? empty_like(dv) : null;
        var gateValue = hasIds ? s[3].item<float>() : 0f;
        var dGate = Kernels.Backward(dv, s[0], s[1], hasIds ? s[2] : null, gateValue, dSum, dIds);
        return [dIds!, hasIds ? dGate : null!, hasTitles ? dSum : null!];
    }

    private static unsafe class Kernels
    {
        public static void Forward(Tensor? idsT, float gate, Tensor? titlesT, Tensor vT, Tensor inverseT)
        {
            var (rows, d) = ((int)vT.shape[0], (int)vT.shape[1]);
            var ids = idsT is null ? 0 : (nint)Ptr(idsT);
            var titles = titlesT is null ? 0 : (nint)Ptr(titlesT);
            var (v, inverse) = ((nint)Ptr(vT), (nint)Ptr(inverseT));
            ForEach((rows + ChunkRows - 1) / ChunkRows, 0, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (c, _) =>
            {
                for (var r = c * ChunkRows; r < Math.Min(rows, (c + 1) * ChunkRows); r++)
                {
                    var row = (long)r * d;
                    var out_ = (float*)v + row;
                    Sum(ids == 0 ? null : (float*)ids + row, gate, titles == 0 ? null : (float*)titles + row, out_, d);
                    var inv = 1f / MathF.Max(MathF.Sqrt(Dot(out_, out_, d)), Eps);
                    ((float*)inverse)[r] = inv;
                    Scale(out_, inv, out_, d);
                }
            });
        }

        /// <summary>ds = (dv − v·(v·dv))·inverse (the norm's gradient; where ‖s‖ ≤ eps the clamp is constant and ds =
        /// dv·inverse); dIds = gate·ds; returns gate's gradient Σ ds·E.</summary>
        public static Tensor Backward(Tensor dvT, Tensor vT, Tensor inverseT, Tensor? idsT, float gate, Tensor dSumT, Tensor? dIdsT)
        {
            var (rows, d) = ((int)vT.shape[0], (int)vT.shape[1]);
            var chunks = (rows + ChunkRows - 1) / ChunkRows;
            using var partialT = zeros(chunks, 1, dtype: ScalarType.Float32);
            var (dv, v, inverse, dSum, partial) = ((nint)Ptr(dvT), (nint)Ptr(vT), (nint)Ptr(inverseT), (nint)Ptr(dSumT), (nint)Ptr(partialT));
            var ids = idsT is null ? 0 : (nint)Ptr(idsT);
            var dIds = dIdsT is null ? 0 : (nint)Ptr(dIdsT);
            ForEach(chunks, 0, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (c, _) =>
            {
                var gateSum = 0f;
                for (var r = c * ChunkRows; r < Math.Min(rows, (c + 1) * ChunkRows); r++)
                {
                    var row = (long)r * d;
                    float* dvr = (float*)dv + row, vr = (float*)v + row, ds = (float*)dSum + row;
                    var inv = ((float*)inverse)[r];
                    // Below the clamp the norm is the constant eps: no projection.
                    var along = inv < 1f / Eps ? Dot(vr, dvr, d) : 0f;
                    Project(dvr, vr, along, inv, ds, d);
                    if (ids != 0)
                    {
                        gateSum += Dot(ds, (float*)ids + row, d);
                        Scale(ds, gate, (float*)dIds + row, d);
                    }
                }
                ((float*)partial)[c] = gateSum;
            });
            using var sums = SumChunks(partialT);
            return sums.reshape([]);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static void Sum(float* ids, float gate, float* titles, float* s, int d)
        {
            var j = 0;
            if (Vector512.IsHardwareAccelerated)
                for (; j + 16 <= d; j += 16)
                {
                    var x = ids != null ? Vector512.Load(ids + j) * Vector512.Create(gate) : Vector512<float>.Zero;
                    if (titles != null) x = ids != null ? x + Vector512.Load(titles + j) : Vector512.Load(titles + j);
                    x.Store(s + j);
                }
            for (; j < d; j++)
            {
                var x = ids != null ? ids[j] * gate : 0f;
                if (titles != null) x = ids != null ? x + titles[j] : titles[j];
                s[j] = x;
            }
        }

        /// <summary>ds = (dv − v·along)·inv.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static void Project(float* dv, float* v, float along, float inv, float* ds, int d)
        {
            var j = 0;
            if (Vector512.IsHardwareAccelerated)
                for (; j + 16 <= d; j += 16)
                    ((Vector512.Load(dv + j) - Vector512.Load(v + j) * Vector512.Create(along)) * Vector512.Create(inv)).Store(ds + j);
            for (; j < d; j++) ds[j] = (dv[j] - v[j] * along) * inv;
        }
    }
}
