using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using static TorchSharp.torch;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace LSVCR.Modeling.Cpu;

/// <summary>
/// Small CPU building blocks of the hand-written autograd kernels (<see cref="FusedAttention"/>,
/// <see cref="IdTextKernel"/>): raw float pointers into contiguous tensors, a parallel loop over work items that
/// follows libtorch's thread count, and vectorised row products. Vectors are 16-float <see cref="Vector512{T}"/> where
/// the CPU has AVX-512, then 8-float <see cref="Vector256{T}"/> and scalar tails, so any size works; no package offers
/// these for TorchSharp tensors.
/// </summary>
internal static unsafe class CpuKernels
{
    /// <summary>The data of a contiguous float32 CPU tensor.</summary>
    public static float* Ptr(Tensor t) => (float*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(MemoryMarshal.Cast<byte, float>(t.bytes)));

    /// <summary>The data of a contiguous int32 CPU tensor.</summary>
    public static int* Int32Ptr(Tensor t) => (int*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(MemoryMarshal.Cast<byte, int>(t.bytes)));

    /// <summary>n rounded up to whole vectors.</summary>
    public static int Pad(int n) => (n + 7) & ~7;

    /// <summary>Runs <paramref name="body"/>(item, scratch) for every item, on as many threads as libtorch uses
    /// (<c>get_num_threads</c>), each thread with its own pinned scratch of <paramref name="scratchFloats"/>. Items
    /// go out in runs of consecutive items (about eight runs per thread) so scheduling stays off the profile.</summary>
    public static void ForEach(int items, int scratchFloats, Action<int, nint> body)
    {
        var threads = Math.Max(1, get_num_threads());
        if (threads == 1 && items > 1 && LoopSharing.Offering)
        {
            LoopSharing.Run(items, scratchFloats, body, Scratch);
            return;
        }
        if (threads == 1 || items == 1)
        {
            var s = Scratch(scratchFloats);
            for (var i = 0; i < items; i++) body(i, s);
            return;
        }
        var run = Math.Max(1, items / (8 * threads));
        var runs = (items + run - 1) / run;
        Parallel.For(0, runs, new ParallelOptions { MaxDegreeOfParallelism = threads },
            () => Scratch(scratchFloats),
            (r, _, s) =>
            {
                for (var i = r * run; i < Math.Min(items, (r + 1) * run); i++) body(i, s);
                return s;
            },
            _ => { });
    }

    [ThreadStatic] private static float[]? _scratch;

    /// <summary>This thread's pinned scratch of at least <paramref name="floats"/>, kept for the thread's next call:
    /// the fused nodes ask for 100–200 KB per thread and call, and fresh pinned arrays of that size went to the
    /// pinned-object heap and were only reclaimed by full collections. Safe because a thread runs one work item at
    /// a time and the kernels never nest ForEach.</summary>
    internal static nint Scratch(int floats)
    {
        if (_scratch is null || _scratch.Length < floats) _scratch = GC.AllocateUninitializedArray<float>(Math.Max(floats, 1), pinned: true);
        return (nint)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_scratch));
    }

    /// <summary>Σ over the rows of a [chunks, w] float32 tensor of per-chunk partial sums, each column added in row
    /// order (column stripes in parallel): the kernels' parameter gradients come out the same for any thread count
    /// (libtorch's sum may split the reduction differently).</summary>
    public static Tensor SumChunks(Tensor partial)
    {
        var (chunks, w) = ((int)partial.shape[0], (int)partial.shape[1]);
        var sum = zeros(w, dtype: ScalarType.Float32);
        var (src, dst) = ((nint)Ptr(partial), (nint)Ptr(sum));
        // Column stripes in parallel, each summed over the chunks in row order (the order fixes the result).
        const int Stripe = 4096;
        ForEach((w + Stripe - 1) / Stripe, 0, (s, _) =>
        {
            var (j0, n) = (s * Stripe, Math.Min(Stripe, w - s * Stripe));
            var total = new Span<float>((float*)dst + j0, n);
            for (var c = 0; c < chunks; c++)
                TensorPrimitives.Add(total, new ReadOnlySpan<float>((float*)src + (long)c * w + j0, n), total);
        });
        return sum;
    }

    /// <summary>A copy (own storage, for a .grad) of the [shape] slice of a flat sum starting at
    /// <paramref name="offset"/>: one parameter's gradient out of <see cref="SumChunks"/>' partial-row layout.</summary>
    public static Tensor Slice(Tensor flat, long offset, params long[] shape) =>
        flat.narrow(0, offset, shape.Aggregate(1L, (a, b) => a * b)).view(shape).clone();

    /// <summary>Rows fetched ahead by the kernels that read random rows of tables far larger than the caches (the
    /// id–text gather, the comment-text means): enough to overlap the loads.</summary>
    public const int PrefetchLookahead = 4;

    /// <summary>Asks for the cache lines of <paramref name="floats"/> floats from <paramref name="p"/> (no-op without SSE).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Prefetch(float* p, int floats)
    {
        if (!Sse.IsSupported) return;
        for (var t = 0; t < floats; t += 16) Sse.Prefetch0(p + t);
    }

    /// <summary>A lane mask (for Avx512F.MaskLoad/MaskStore) selecting the first <paramref name="count"/> of 16 lanes.</summary>
    public static Vector512<float> Tail(int count) =>
        Vector512.LessThan(Vector512<int>.Indices, Vector512.Create(count)).AsSingle();

    /// <summary>The largest lane, by halving (a lane-by-lane loop over GetElement goes through memory).</summary>
    public static float HorizontalMax(Vector512<float> v)
    {
        var h = Vector256.Max(v.GetLower(), v.GetUpper());
        var q = Vector128.Max(h.GetLower(), h.GetUpper());
        q = Vector128.Max(q, Vector128.Shuffle(q, Vector128.Create(2, 3, 0, 1)));
        q = Vector128.Max(q, Vector128.Shuffle(q, Vector128.Create(1, 0, 3, 2)));
        return q.ToScalar();
    }

    /// <summary>e^x inline, Cephes' expf (round to n = x·log₂e, reduce by n·ln2 in two parts, degree-6
    /// polynomial, scale by 2ⁿ), ≤ 2 ulp on [−87.3, 88.4]; 0 below, clamped above: Vector512.Exp is a call
    /// and was the largest cost of the GELU pass. Plain Vector512 operations: exact on any CPU, fast with AVX-512.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Exp(Vector512<float> x)
    {
        var underflow = Vector512.LessThan(x, Vector512.Create(-87.33654f));
        x = Vector512.Max(Vector512.Min(x, Vector512.Create(88.37626f)), Vector512.Create(-87.33654f));
        var n = Vector512.Round(x * Vector512.Create(1.44269504f));
        var r = Vector512.FusedMultiplyAdd(n, Vector512.Create(-0.693359375f), x);
        r = Vector512.FusedMultiplyAdd(n, Vector512.Create(2.12194440e-4f), r);
        var p = Vector512.FusedMultiplyAdd(Vector512.Create(1.9875691500e-4f), r, Vector512.Create(1.3981999507e-3f));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(8.3334519073e-3f));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(4.1665795894e-2f));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(1.6666665459e-1f));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(5.0000001201e-1f));
        p = Vector512.FusedMultiplyAdd(p, r * r, r + Vector512<float>.One);
        // Below the smallest normal result: exactly 0, as masked scores (−1e6) need — a clamped 1e-38 there turned
        // into denormal probabilities and slowed every GEMM that read them several-fold.
        // n is integral and in [−126, 127]: the native conversion is exact (the saturating one costs four more
        // instructions per vector, ≈ 10 % of a GELU pass).
        var twoToN = Vector512.ShiftLeft(Vector512.ConvertToInt32Native(n) + Vector512.Create(127), 23).AsSingle();
        return Vector512.ConditionalSelect(underflow, Vector512<float>.Zero, p * twoToN);
    }

    /// <summary>log Σ exp(v[0..n)), with the maximum subtracted first (a row of the id–text band). AVX-512: whole
    /// vectors plus one masked tail; otherwise TensorPrimitives in chunks.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float LogSumExp(float* v, int n)
    {
        if (!Avx512F.IsSupported)
        {
            var max = TensorPrimitives.Max(new ReadOnlySpan<float>(v, n));
            Span<float> chunk = stackalloc float[256];
            var total = 0f;
            for (var start = 0; start < n; start += chunk.Length)
            {
                var part = chunk[..Math.Min(chunk.Length, n - start)];
                TensorPrimitives.Subtract(new ReadOnlySpan<float>(v + start, part.Length), max, part);
                TensorPrimitives.Exp(part, part);
                total += TensorPrimitives.Sum(part);
            }
            return max + MathF.Log(total);
        }
        var minusInf = Vector512.Create(float.NegativeInfinity);
        var tailMask = Tail(n & 15);
        var last = n & ~15;
        var maxV = last < n ? Avx512F.MaskLoad(v + last, tailMask, minusInf) : minusInf;
        for (var j = 0; j < last; j += 16) maxV = Vector512.Max(maxV, Vector512.Load(v + j));
        var rowMax = HorizontalMax(maxV);
        var m = Vector512.Create(rowMax);
        var sum = last < n ? Exp(Avx512F.MaskLoad(v + last, tailMask, minusInf) - m) : Vector512<float>.Zero;
        for (var j = 0; j < last; j += 16) sum += Exp(Vector512.Load(v + j) - m);
        return rowMax + MathF.Log(Vector512.Sum(sum));
    }

    /// <summary>dst[0..n) ← (dst +) w · exp(src − lse): the softmax of logits whose log-sum-exp is
    /// <paramref name="lse"/>, scaled — the softmax part of a cross-entropy gradient; dst may alias src.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void ScaledSoftmax(float* src, int n, float lse, float w, float* dst, bool accumulate)
    {
        if (!Avx512F.IsSupported)
        {
            for (var j = 0; j < n; j++)
            {
                var p = w * MathF.Exp(src[j] - lse);
                dst[j] = accumulate ? dst[j] + p : p;
            }
            return;
        }
        var (lseV, wV) = (Vector512.Create(lse), Vector512.Create(w));
        var i = 0;
        for (; i + 16 <= n; i += 16)
        {
            var p = Exp(Vector512.Load(src + i) - lseV) * wV;
            (accumulate ? p + Vector512.Load(dst + i) : p).Store(dst + i);
        }
        if (i < n)
        {
            var tail = Tail(n - i);
            var p = Exp(Avx512F.MaskLoad(src + i, tail, lseV) - lseV) * wV;
            Avx512F.MaskStore(dst + i, tail, accumulate ? p + Avx512F.MaskLoad(dst + i, tail, Vector512<float>.Zero) : p);
        }
    }

    /// <summary>dst[0..n) = x ⊙ y.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Multiply(float* x, float* y, float* dst, int n)
    {
        var j = 0;
        if (Avx512F.IsSupported)
        {
            // Rows here are short (an attention row: 50 keys), so the tail is one masked vector, not a scalar loop.
            for (; j + 16 <= n; j += 16) (Vector512.Load(x + j) * Vector512.Load(y + j)).Store(dst + j);
            if (j < n)
            {
                var tail = Tail(n - j);
                Avx512F.MaskStore(dst + j, tail, Avx512F.MaskLoad(x + j, tail, Vector512<float>.Zero) * Avx512F.MaskLoad(y + j, tail, Vector512<float>.Zero));
            }
            return;
        }
        for (; j + 8 <= n; j += 8) (Vector256.Load(x + j) * Vector256.Load(y + j)).Store(dst + j);
        for (; j < n; j++) dst[j] = x[j] * y[j];
    }

    /// <summary>Σ a[j]·b[j] over one row (a single FMA chain; the row-sized reductions of the fused nodes).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Dot(float* a, float* b, int n)
    {
        var (sum, j) = (0f, 0);
        if (Vector512.IsHardwareAccelerated)
        {
            var acc = Vector512<float>.Zero;
            for (; j + 16 <= n; j += 16) acc = Vector512.FusedMultiplyAdd(Vector512.Load(a + j), Vector512.Load(b + j), acc);
            sum = Vector512.Sum(acc);
        }
        for (; j < n; j++) sum += a[j] * b[j];
        return sum;
    }

    /// <summary>dst[0..n) = x·k (in place when dst = x).</summary>
    public static void Scale(float* x, float k, float* dst, int n) =>
        TensorPrimitives.Multiply(new ReadOnlySpan<float>(x, n), k, new Span<float>(dst, n));

    // A chain of dependent FMAs per reduction step; even and odd steps go to separate accumulators so twice as many
    // chains are in flight (FMA latency bounded the single-chain loops).

    /// <summary>dst[0..dh) = Σ_j w[j·ws] · rows[j·stride + 0..dh): a weighted sum of n rows — also a row vector
    /// times a row-major matrix (w = the vector, rows = the matrix's rows).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void WeightedRowSum(float* w, int ws, int n, float* rows, int stride, int dh, float* dst)
    {
        var t = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; t + 64 <= dh; t += 64)
            {
                Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, b0 = default, b1 = default, b2 = default, b3 = default;
                var j = 0;
                for (; j + 2 <= n; j += 2)
                {
                    var wv = Vector512.Create(w[(long)j * ws]);
                    var vv = Vector512.Create(w[(long)(j + 1) * ws]);
                    var r = rows + (long)j * stride + t;
                    var u = r + stride;
                    a0 = Vector512.FusedMultiplyAdd(wv, Vector512.Load(r + 0), a0);
                    a1 = Vector512.FusedMultiplyAdd(wv, Vector512.Load(r + 16), a1);
                    a2 = Vector512.FusedMultiplyAdd(wv, Vector512.Load(r + 32), a2);
                    a3 = Vector512.FusedMultiplyAdd(wv, Vector512.Load(r + 48), a3);
                    b0 = Vector512.FusedMultiplyAdd(vv, Vector512.Load(u + 0), b0);
                    b1 = Vector512.FusedMultiplyAdd(vv, Vector512.Load(u + 16), b1);
                    b2 = Vector512.FusedMultiplyAdd(vv, Vector512.Load(u + 32), b2);
                    b3 = Vector512.FusedMultiplyAdd(vv, Vector512.Load(u + 48), b3);
                }
                if (j < n)
                {
                    var wv = Vector512.Create(w[(long)j * ws]);
                    var r = rows + (long)j * stride + t;
                    a0 = Vector512.FusedMultiplyAdd(wv, Vector512.Load(r + 0), a0);
                    a1 = Vector512.FusedMultiplyAdd(wv, Vector512.Load(r + 16), a1);
                    a2 = Vector512.FusedMultiplyAdd(wv, Vector512.Load(r + 32), a2);
                    a3 = Vector512.FusedMultiplyAdd(wv, Vector512.Load(r + 48), a3);
                }
                (a0 + b0).Store(dst + t + 0); (a1 + b1).Store(dst + t + 16); (a2 + b2).Store(dst + t + 32); (a3 + b3).Store(dst + t + 48);
            }
            for (; t + 32 <= dh; t += 32)
            {
                Vector512<float> a0 = default, a1 = default, b0 = default, b1 = default;
                var j = 0;
                for (; j + 2 <= n; j += 2)
                {
                    var wv = Vector512.Create(w[(long)j * ws]);
                    var vv = Vector512.Create(w[(long)(j + 1) * ws]);
                    var r = rows + (long)j * stride + t;
                    var u = r + stride;
                    a0 = Vector512.FusedMultiplyAdd(wv, Vector512.Load(r + 0), a0);
                    a1 = Vector512.FusedMultiplyAdd(wv, Vector512.Load(r + 16), a1);
                    b0 = Vector512.FusedMultiplyAdd(vv, Vector512.Load(u + 0), b0);
                    b1 = Vector512.FusedMultiplyAdd(vv, Vector512.Load(u + 16), b1);
                }
                if (j < n)
                {
                    var wv = Vector512.Create(w[(long)j * ws]);
                    var r = rows + (long)j * stride + t;
                    a0 = Vector512.FusedMultiplyAdd(wv, Vector512.Load(r + 0), a0);
                    a1 = Vector512.FusedMultiplyAdd(wv, Vector512.Load(r + 16), a1);
                }
                (a0 + b0).Store(dst + t + 0); (a1 + b1).Store(dst + t + 16);
            }
            for (; t + 16 <= dh; t += 16)
            {
                Vector512<float> a0 = default, b0 = default;
                var j = 0;
                for (; j + 2 <= n; j += 2)
                {
                    var wv = Vector512.Create(w[(long)j * ws]);
                    var vv = Vector512.Create(w[(long)(j + 1) * ws]);
                    var r = rows + (long)j * stride + t;
                    var u = r + stride;
                    a0 = Vector512.FusedMultiplyAdd(wv, Vector512.Load(r + 0), a0);
                    b0 = Vector512.FusedMultiplyAdd(vv, Vector512.Load(u + 0), b0);
                }
                if (j < n)
                {
                    var wv = Vector512.Create(w[(long)j * ws]);
                    var r = rows + (long)j * stride + t;
                    a0 = Vector512.FusedMultiplyAdd(wv, Vector512.Load(r + 0), a0);
                }
                (a0 + b0).Store(dst + t + 0);
            }
        }
        for (; t + 32 <= dh; t += 32)
        {
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
            Vector256<float> b0 = default, b1 = default, b2 = default, b3 = default;
            var j = 0;
            for (; j + 2 <= n; j += 2)
            {
                var wv = Vector256.Create(w[(long)j * ws]);
                var vv = Vector256.Create(w[(long)(j + 1) * ws]);
                var r = rows + (long)j * stride + t;
                var u = r + stride;
                a0 = Vector256.FusedMultiplyAdd(wv, Vector256.Load(r), a0);
                a1 = Vector256.FusedMultiplyAdd(wv, Vector256.Load(r + 8), a1);
                a2 = Vector256.FusedMultiplyAdd(wv, Vector256.Load(r + 16), a2);
                a3 = Vector256.FusedMultiplyAdd(wv, Vector256.Load(r + 24), a3);
                b0 = Vector256.FusedMultiplyAdd(vv, Vector256.Load(u), b0);
                b1 = Vector256.FusedMultiplyAdd(vv, Vector256.Load(u + 8), b1);
                b2 = Vector256.FusedMultiplyAdd(vv, Vector256.Load(u + 16), b2);
                b3 = Vector256.FusedMultiplyAdd(vv, Vector256.Load(u + 24), b3);
            }
            if (j < n)
            {
                var wv = Vector256.Create(w[(long)j * ws]);
                var r = rows + (long)j * stride + t;
                a0 = Vector256.FusedMultiplyAdd(wv, Vector256.Load(r), a0);
                a1 = Vector256.FusedMultiplyAdd(wv, Vector256.Load(r + 8), a1);
                a2 = Vector256.FusedMultiplyAdd(wv, Vector256.Load(r + 16), a2);
                a3 = Vector256.FusedMultiplyAdd(wv, Vector256.Load(r + 24), a3);
            }
            (a0 + b0).Store(dst + t); (a1 + b1).Store(dst + t + 8); (a2 + b2).Store(dst + t + 16); (a3 + b3).Store(dst + t + 24);
        }
        for (; t + 8 <= dh; t += 8)
        {
            Vector256<float> a0 = default, b0 = default;
            var j = 0;
            for (; j + 2 <= n; j += 2)
            {
                a0 = Vector256.FusedMultiplyAdd(Vector256.Create(w[(long)j * ws]), Vector256.Load(rows + (long)j * stride + t), a0);
                b0 = Vector256.FusedMultiplyAdd(Vector256.Create(w[(long)(j + 1) * ws]), Vector256.Load(rows + (long)(j + 1) * stride + t), b0);
            }
            if (j < n) a0 = Vector256.FusedMultiplyAdd(Vector256.Create(w[(long)j * ws]), Vector256.Load(rows + (long)j * stride + t), a0);
            (a0 + b0).Store(dst + t);
        }
        for (; t < dh; t++)
        {
            var sum = 0f;
            for (var j = 0; j < n; j++) sum = MathF.FusedMultiplyAdd(w[(long)j * ws], rows[(long)j * stride + t], sum);
            dst[t] = sum;
        }
    }

    /// <summary>
    /// C[m·cs + n] (+)= Σ_k A[m·ams + k·aks] · B[k·bs + n] for m &lt; M, n &lt; N (+= with <paramref name="accumulate"/>):
    /// a small GEMM of matrices that sit in L1/L2 (one attention head, one id–text block, one row block of a
    /// feed-forward layer or of a weight gradient), with A read element-wise at any strides (so Aᵀ costs nothing)
    /// and B and C row-major. Tiles of 6|4 rows × 64 columns or 8 rows × 32|16 columns keep 24|16 (8) accumulators in
    /// registers and reuse every B load across the tile's rows: row-at-a-time <see cref="WeightedRowSum"/> is bound by
    /// its loads and FMA latency at about a third of this speed. Row and column remainders go to WeightedRowSum.
    /// <para>With <paramref name="bias"/> (a row of <paramref name="cols"/> floats, not with accumulate) C = A·B + bias,
    /// the bias added as each sum is stored: the same bits as filling C with the bias rows and accumulating, without
    /// that fill pass and the reload of C.</para>
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Gemm(float* a, int ams, int aks, float* b, int bs, float* c, int cs, int rows, int cols, int depth, bool accumulate = false,
        float* bias = null)
    {
        if (accumulate && bias != null) throw new ArgumentException("Gemm adds either C or a bias row, not both.");
        var n = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; n + 64 <= cols; n += 64)
            {
                var m = 0;
                for (; m + 6 <= rows; m += 6) Tile6x64(a + (long)m * ams, ams, aks, b + n, bs, c + (long)m * cs + n, cs, depth, accumulate, At(bias, n));
                for (; m + 4 <= rows; m += 4) Tile4x64(a + (long)m * ams, ams, aks, b + n, bs, c + (long)m * cs + n, cs, depth, accumulate, At(bias, n));
                for (; m < rows; m++) RowRemainder(a + (long)m * ams, aks, depth, b + n, bs, 64, c + (long)m * cs + n, accumulate, At(bias, n));
            }
            for (; n + 32 <= cols; n += 32)
            {
                var m = 0;
                for (; m + 8 <= rows; m += 8) Tile8x32(a + (long)m * ams, ams, aks, b + n, bs, c + (long)m * cs + n, cs, depth, accumulate, At(bias, n));
                for (; m < rows; m++) RowRemainder(a + (long)m * ams, aks, depth, b + n, bs, 32, c + (long)m * cs + n, accumulate, At(bias, n));
            }
            for (; n + 16 <= cols; n += 16)
            {
                var m = 0;
                for (; m + 8 <= rows; m += 8) Tile8x16(a + (long)m * ams, ams, aks, b + n, bs, c + (long)m * cs + n, cs, depth, accumulate, At(bias, n));
                for (; m < rows; m++) RowRemainder(a + (long)m * ams, aks, depth, b + n, bs, 16, c + (long)m * cs + n, accumulate, At(bias, n));
            }
        }
        if (n < cols)
            for (var m = 0; m < rows; m++) RowRemainder(a + (long)m * ams, aks, depth, b + n, bs, cols - n, c + (long)m * cs + n, accumulate, At(bias, n));
    }

    /// <summary><see cref="Gemm"/> for one block of at most 8 rows of C: a whole block of 8 runs entirely in 8-row tiles
    /// (32 and 16 columns) — Gemm's 64-column tiles take 6 rows and would leave 2 to the row-at-a-time path — and a
    /// shorter one goes to Gemm. For callers that cut C into 8-row blocks of different widths or depths (the attention
    /// rows, the id–text row groups); each element is the same FMA chain as in Gemm's tiles.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void GemmRowBlock(float* a, int ams, int aks, float* b, int bs, float* c, int cs, int rows, int cols, int depth)
    {
        if (rows != RowBlock)
        {
            Gemm(a, ams, aks, b, bs, c, cs, rows, cols, depth);
            return;
        }
        var n = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; n + 32 <= cols; n += 32) Tile8x32(a, ams, aks, b + n, bs, c + n, cs, depth, false, null);
            for (; n + 16 <= cols; n += 16) Tile8x16(a, ams, aks, b + n, bs, c + n, cs, depth, false, null);
        }
        if (n < cols)
            for (var m = 0; m < RowBlock; m++) RowRemainder(a + (long)m * ams, aks, depth, b + n, bs, cols - n, c + (long)m * cs + n, false, null);
    }

    /// <summary>Rows of C per <see cref="GemmRowBlock"/> block.</summary>
    public const int RowBlock = 8;

    /// <summary>dst[t] = max(dst[t], src[t]): running column maxima (the id–text band, the full-softmax blocks).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void MaxInto(float* dst, float* src, int n)
    {
        var t = 0;
        if (Vector512.IsHardwareAccelerated)
            for (; t + 16 <= n; t += 16) Vector512.Max(Vector512.Load(dst + t), Vector512.Load(src + t)).Store(dst + t);
        for (; t < n; t++) dst[t] = MathF.Max(dst[t], src[t]);
    }

    /// <summary>dst[t] += exp(src[t] − shift[t]).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void AddExp(float* dst, float* src, float* shift, int n)
    {
        var t = 0;
        if (Avx512F.IsSupported)
            for (; t + 16 <= n; t += 16) (Vector512.Load(dst + t) + Exp(Vector512.Load(src + t) - Vector512.Load(shift + t))).Store(dst + t);
        for (; t < n; t++) dst[t] += MathF.Exp(src[t] - shift[t]);
    }

    /// <summary>Columns per panel of a packed B (<see cref="Pack"/>): the width of the 64-column tiles.</summary>
    public const int PanelWidth = 64;

    /// <summary>Floats of a packed copy of a [depth, cols] matrix.</summary>
    public static int PackedSize(int depth, int cols) => (cols + PanelWidth - 1) / PanelWidth * PanelWidth * depth;

    /// <summary>Copies row-major B [depth, cols] (row stride <paramref name="bs"/>) into panels of
    /// <see cref="PanelWidth"/> columns, each panel [depth, 64] contiguous (the last one zero-padded).
    /// <para>Why: a 64-column panel of a row-major B whose rows are 1 KB or more apart maps onto a few L1 sets and
    /// evicts itself while the tiles sweep down C (measured ≈ 15 % slower at 256 columns); a contiguous panel does
    /// not.</para></summary>
    public static void Pack(float* b, int bs, int depth, int cols, float* dst)
    {
        for (var p = 0; p * PanelWidth < cols; p++)
        {
            var width = Math.Min(PanelWidth, cols - p * PanelWidth);
            var panel = dst + (long)p * PanelWidth * depth;
            for (var k = 0; k < depth; k++)
            {
                var row = panel + (long)k * PanelWidth;
                new Span<float>(b + (long)k * bs + p * PanelWidth, width).CopyTo(new Span<float>(row, width));
                if (width < PanelWidth) new Span<float>(row + width, PanelWidth - width).Clear();
            }
        }
    }

    /// <summary><see cref="Gemm"/> with B given as panels of <paramref name="packedDepth"/> rows (<see cref="Pack"/>),
    /// of which the first <paramref name="depth"/> are used.</summary>
    public static void GemmPacked(float* a, int ams, int aks, float* packed, int packedDepth, float* c, int cs, int rows, int cols, int depth, bool accumulate = false,
        float* bias = null)
    {
        for (var p = 0; p * PanelWidth < cols; p++)
            Gemm(a, ams, aks, packed + (long)p * PanelWidth * packedDepth, PanelWidth, c + p * PanelWidth, cs, rows,
                Math.Min(PanelWidth, cols - p * PanelWidth), depth, accumulate, At(bias, p * PanelWidth));
    }

    /// <summary>bias + offset, or null without a bias.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float* At(float* bias, int offset) => bias == null ? null : bias + offset;

    /// <summary>One row of C by <see cref="WeightedRowSum"/>; with <paramref name="accumulate"/> added to C through a
    /// stack row (WeightedRowSum overwrites its destination).</summary>
    private static void RowRemainder(float* w, int ws, int n, float* rows, int stride, int dh, float* dst, bool accumulate, float* bias)
    {
        if (!accumulate && bias == null) { WeightedRowSum(w, ws, n, rows, stride, dh, dst); return; }
        var row = stackalloc float[dh];
        WeightedRowSum(w, ws, n, rows, stride, dh, row);
        var add = accumulate ? dst : bias;
        for (var j = 0; j < dh; j++) dst[j] = row[j] + add[j];
    }

    /// <summary>Stores a tile accumulator, added to what C holds when accumulating, else to the bias row's
    /// <paramref name="j"/>-th element on when there is one.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Put(Vector512<float> v, float* c, bool accumulate, float* bias, int j) =>
        (accumulate ? v + Vector512.Load(c) : bias != null ? v + Vector512.Load(bias + j) : v).Store(c);

    /// <summary>6 rows × 64 columns, 24 accumulators: a B row (four vectors) feeds 24 FMAs, so a B panel that has
    /// to come from L2 (depth ≳ 150) does not bound it — 4 × 64 lost ≈ 25 % there (measured at depth 256).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile6x64(float* a, int ams, int aks, float* b, int bs, float* c, int cs, int depth, bool acc, float* bias)
    {
        Vector512<float> c00 = default, c01 = default, c02 = default, c03 = default;
        Vector512<float> c10 = default, c11 = default, c12 = default, c13 = default;
        Vector512<float> c20 = default, c21 = default, c22 = default, c23 = default;
        Vector512<float> c30 = default, c31 = default, c32 = default, c33 = default;
        Vector512<float> c40 = default, c41 = default, c42 = default, c43 = default;
        Vector512<float> c50 = default, c51 = default, c52 = default, c53 = default;
        nint a1 = ams, a2 = 2 * (nint)ams, a3 = 3 * (nint)ams, a4 = 4 * (nint)ams, a5 = 5 * (nint)ams, bStep = bs, aStep = aks;
        var end = b + depth * bStep;
        for (float* bp = b, ap = a; bp < end; bp += bStep, ap += aStep)
        {
            var (b0, b1, b2, b3) = (Vector512.Load(bp), Vector512.Load(bp + 16), Vector512.Load(bp + 32), Vector512.Load(bp + 48));
            var w = Vector512.Create(ap[0]);
            c00 = Vector512.FusedMultiplyAdd(w, b0, c00); c01 = Vector512.FusedMultiplyAdd(w, b1, c01);
            c02 = Vector512.FusedMultiplyAdd(w, b2, c02); c03 = Vector512.FusedMultiplyAdd(w, b3, c03);
            w = Vector512.Create(ap[a1]);
            c10 = Vector512.FusedMultiplyAdd(w, b0, c10); c11 = Vector512.FusedMultiplyAdd(w, b1, c11);
            c12 = Vector512.FusedMultiplyAdd(w, b2, c12); c13 = Vector512.FusedMultiplyAdd(w, b3, c13);
            w = Vector512.Create(ap[a2]);
            c20 = Vector512.FusedMultiplyAdd(w, b0, c20); c21 = Vector512.FusedMultiplyAdd(w, b1, c21);
            c22 = Vector512.FusedMultiplyAdd(w, b2, c22); c23 = Vector512.FusedMultiplyAdd(w, b3, c23);
            w = Vector512.Create(ap[a3]);
            c30 = Vector512.FusedMultiplyAdd(w, b0, c30); c31 = Vector512.FusedMultiplyAdd(w, b1, c31);
            c32 = Vector512.FusedMultiplyAdd(w, b2, c32); c33 = Vector512.FusedMultiplyAdd(w, b3, c33);
            w = Vector512.Create(ap[a4]);
            c40 = Vector512.FusedMultiplyAdd(w, b0, c40); c41 = Vector512.FusedMultiplyAdd(w, b1, c41);
            c42 = Vector512.FusedMultiplyAdd(w, b2, c42); c43 = Vector512.FusedMultiplyAdd(w, b3, c43);
            w = Vector512.Create(ap[a5]);
            c50 = Vector512.FusedMultiplyAdd(w, b0, c50); c51 = Vector512.FusedMultiplyAdd(w, b1, c51);
            c52 = Vector512.FusedMultiplyAdd(w, b2, c52); c53 = Vector512.FusedMultiplyAdd(w, b3, c53);
        }
        Put(c00, c, acc, bias, 0); Put(c01, c + 16, acc, bias, 16); Put(c02, c + 32, acc, bias, 32); Put(c03, c + 48, acc, bias, 48); c += cs;
        Put(c10, c, acc, bias, 0); Put(c11, c + 16, acc, bias, 16); Put(c12, c + 32, acc, bias, 32); Put(c13, c + 48, acc, bias, 48); c += cs;
        Put(c20, c, acc, bias, 0); Put(c21, c + 16, acc, bias, 16); Put(c22, c + 32, acc, bias, 32); Put(c23, c + 48, acc, bias, 48); c += cs;
        Put(c30, c, acc, bias, 0); Put(c31, c + 16, acc, bias, 16); Put(c32, c + 32, acc, bias, 32); Put(c33, c + 48, acc, bias, 48); c += cs;
        Put(c40, c, acc, bias, 0); Put(c41, c + 16, acc, bias, 16); Put(c42, c + 32, acc, bias, 32); Put(c43, c + 48, acc, bias, 48); c += cs;
        Put(c50, c, acc, bias, 0); Put(c51, c + 16, acc, bias, 16); Put(c52, c + 32, acc, bias, 32); Put(c53, c + 48, acc, bias, 48);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile4x64(float* a, int ams, int aks, float* b, int bs, float* c, int cs, int depth, bool acc, float* bias)
    {
        Vector512<float> c00 = default, c01 = default, c02 = default, c03 = default;
        Vector512<float> c10 = default, c11 = default, c12 = default, c13 = default;
        Vector512<float> c20 = default, c21 = default, c22 = default, c23 = default;
        Vector512<float> c30 = default, c31 = default, c32 = default, c33 = default;
        nint a1 = ams, a2 = 2 * (nint)ams, a3 = 3 * (nint)ams, bStep = bs, aStep = aks;
        var end = b + depth * bStep;
        for (float* bp = b, ap = a; bp < end; bp += bStep, ap += aStep)
        {
            var (b0, b1, b2, b3) = (Vector512.Load(bp), Vector512.Load(bp + 16), Vector512.Load(bp + 32), Vector512.Load(bp + 48));
            var w = Vector512.Create(ap[0]);
            c00 = Vector512.FusedMultiplyAdd(w, b0, c00); c01 = Vector512.FusedMultiplyAdd(w, b1, c01);
            c02 = Vector512.FusedMultiplyAdd(w, b2, c02); c03 = Vector512.FusedMultiplyAdd(w, b3, c03);
            w = Vector512.Create(ap[a1]);
            c10 = Vector512.FusedMultiplyAdd(w, b0, c10); c11 = Vector512.FusedMultiplyAdd(w, b1, c11);
            c12 = Vector512.FusedMultiplyAdd(w, b2, c12); c13 = Vector512.FusedMultiplyAdd(w, b3, c13);
            w = Vector512.Create(ap[a2]);
            c20 = Vector512.FusedMultiplyAdd(w, b0, c20); c21 = Vector512.FusedMultiplyAdd(w, b1, c21);
            c22 = Vector512.FusedMultiplyAdd(w, b2, c22); c23 = Vector512.FusedMultiplyAdd(w, b3, c23);
            w = Vector512.Create(ap[a3]);
            c30 = Vector512.FusedMultiplyAdd(w, b0, c30); c31 = Vector512.FusedMultiplyAdd(w, b1, c31);
            c32 = Vector512.FusedMultiplyAdd(w, b2, c32); c33 = Vector512.FusedMultiplyAdd(w, b3, c33);
        }
        Put(c00, c, acc, bias, 0); Put(c01, c + 16, acc, bias, 16); Put(c02, c + 32, acc, bias, 32); Put(c03, c + 48, acc, bias, 48); c += cs;
        Put(c10, c, acc, bias, 0); Put(c11, c + 16, acc, bias, 16); Put(c12, c + 32, acc, bias, 32); Put(c13, c + 48, acc, bias, 48); c += cs;
        Put(c20, c, acc, bias, 0); Put(c21, c + 16, acc, bias, 16); Put(c22, c + 32, acc, bias, 32); Put(c23, c + 48, acc, bias, 48); c += cs;
        Put(c30, c, acc, bias, 0); Put(c31, c + 16, acc, bias, 16); Put(c32, c + 32, acc, bias, 32); Put(c33, c + 48, acc, bias, 48);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile8x32(float* a, int ams, int aks, float* b, int bs, float* c, int cs, int depth, bool acc, float* bias)
    {
        Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default, c30 = default, c31 = default;
        Vector512<float> c40 = default, c41 = default, c50 = default, c51 = default, c60 = default, c61 = default, c70 = default, c71 = default;
        var s = (long)ams;
        for (var k = 0; k < depth; k++)
        {
            var bp = b + (long)k * bs;
            var ap = a + (long)k * aks;
            var (b0, b1) = (Vector512.Load(bp), Vector512.Load(bp + 16));
            var w = Vector512.Create(ap[0]);
            c00 = Vector512.FusedMultiplyAdd(w, b0, c00); c01 = Vector512.FusedMultiplyAdd(w, b1, c01);
            w = Vector512.Create(ap[s]);
            c10 = Vector512.FusedMultiplyAdd(w, b0, c10); c11 = Vector512.FusedMultiplyAdd(w, b1, c11);
            w = Vector512.Create(ap[2 * s]);
            c20 = Vector512.FusedMultiplyAdd(w, b0, c20); c21 = Vector512.FusedMultiplyAdd(w, b1, c21);
            w = Vector512.Create(ap[3 * s]);
            c30 = Vector512.FusedMultiplyAdd(w, b0, c30); c31 = Vector512.FusedMultiplyAdd(w, b1, c31);
            w = Vector512.Create(ap[4 * s]);
            c40 = Vector512.FusedMultiplyAdd(w, b0, c40); c41 = Vector512.FusedMultiplyAdd(w, b1, c41);
            w = Vector512.Create(ap[5 * s]);
            c50 = Vector512.FusedMultiplyAdd(w, b0, c50); c51 = Vector512.FusedMultiplyAdd(w, b1, c51);
            w = Vector512.Create(ap[6 * s]);
            c60 = Vector512.FusedMultiplyAdd(w, b0, c60); c61 = Vector512.FusedMultiplyAdd(w, b1, c61);
            w = Vector512.Create(ap[7 * s]);
            c70 = Vector512.FusedMultiplyAdd(w, b0, c70); c71 = Vector512.FusedMultiplyAdd(w, b1, c71);
        }
        Put(c00, c, acc, bias, 0); Put(c01, c + 16, acc, bias, 16); c += cs;
        Put(c10, c, acc, bias, 0); Put(c11, c + 16, acc, bias, 16); c += cs;
        Put(c20, c, acc, bias, 0); Put(c21, c + 16, acc, bias, 16); c += cs;
        Put(c30, c, acc, bias, 0); Put(c31, c + 16, acc, bias, 16); c += cs;
        Put(c40, c, acc, bias, 0); Put(c41, c + 16, acc, bias, 16); c += cs;
        Put(c50, c, acc, bias, 0); Put(c51, c + 16, acc, bias, 16); c += cs;
        Put(c60, c, acc, bias, 0); Put(c61, c + 16, acc, bias, 16); c += cs;
        Put(c70, c, acc, bias, 0); Put(c71, c + 16, acc, bias, 16);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile8x16(float* a, int ams, int aks, float* b, int bs, float* c, int cs, int depth, bool acc, float* bias)
    {
        Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default, c6 = default, c7 = default;
        var s = (long)ams;
        for (var k = 0; k < depth; k++)
        {
            var b0 = Vector512.Load(b + (long)k * bs);
            var ap = a + (long)k * aks;
            c0 = Vector512.FusedMultiplyAdd(Vector512.Create(ap[0]), b0, c0);
            c1 = Vector512.FusedMultiplyAdd(Vector512.Create(ap[s]), b0, c1);
            c2 = Vector512.FusedMultiplyAdd(Vector512.Create(ap[2 * s]), b0, c2);
            c3 = Vector512.FusedMultiplyAdd(Vector512.Create(ap[3 * s]), b0, c3);
            c4 = Vector512.FusedMultiplyAdd(Vector512.Create(ap[4 * s]), b0, c4);
            c5 = Vector512.FusedMultiplyAdd(Vector512.Create(ap[5 * s]), b0, c5);
            c6 = Vector512.FusedMultiplyAdd(Vector512.Create(ap[6 * s]), b0, c6);
            c7 = Vector512.FusedMultiplyAdd(Vector512.Create(ap[7 * s]), b0, c7);
        }
        Put(c0, c, acc, bias, 0); Put(c1, c + cs, acc, bias, 0); Put(c2, c + 2L * cs, acc, bias, 0); Put(c3, c + 3L * cs, acc, bias, 0);
        Put(c4, c + 4L * cs, acc, bias, 0); Put(c5, c + 5L * cs, acc, bias, 0); Put(c6, c + 6L * cs, acc, bias, 0); Put(c7, c + 7L * cs, acc, bias, 0);
    }

    /// <summary>dst[t·dstStride + j] = src[rows[j] + t] for j &lt; n, t &lt; cols: columns of the rows starting at
    /// element offsets <paramref name="rows"/> (a transpose, with any row order or repetition). With AVX2, eight rows
    /// per gather; n may exceed the used rows if <paramref name="rows"/> has valid offsets up to n rounded up to 8.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void GatherColumns(float* src, int* rows, int n, int cols, float* dst, int dstStride)
    {
        var j = 0;
        if (Avx512F.IsSupported && cols % 16 == 0)
            for (; j + 16 <= n; j += 16)
                for (var t = 0; t < cols; t += 16) Transpose16(src + t, rows + j, dst + (long)t * dstStride + j, dstStride);
        if (Avx2.IsSupported)
            for (; j + 8 <= n; j += 8)
            {
                var index = Vector256.Load(rows + j);
                for (var t = 0; t < cols; t++) Avx2.GatherVector256(src + t, index, 4).Store(dst + (long)t * dstStride + j);
            }
        for (; j < n; j++)
        {
            var row = src + rows[j];
            for (var t = 0; t < cols; t++) dst[(long)t * dstStride + j] = row[t];
        }
    }

    /// <summary>dst[t·dstStride + k] = src[rows[k] + t] for k, t &lt; 16: a 16 × 16 block transposed in registers
    /// (unpack pairs of floats, then of float pairs, then 128-bit lanes twice). AVX2 gathers fetch one element per
    /// lane and cost several times more for the attention heads' Kᵀ and Vᵀ; no .NET package transposes blocks.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    [SkipLocalsInit] // both 1 KB stack blocks are written before they are read: no zeroing of 2 KB per 16 × 16 block
    private static void Transpose16(float* src, int* rows, float* dst, int dstStride)
    {
        var r = stackalloc Vector512<float>[16];
        var t = stackalloc Vector512<float>[16];
        for (var k = 0; k < 16; k++) r[k] = Vector512.Load(src + rows[k]);
        for (var k = 0; k < 16; k += 2)
        {
            t[k] = Avx512F.UnpackLow(r[k], r[k + 1]);
            t[k + 1] = Avx512F.UnpackHigh(r[k], r[k + 1]);
        }
        for (var k = 0; k < 16; k += 4)
        {
            r[k] = Avx512F.UnpackLow(t[k].AsDouble(), t[k + 2].AsDouble()).AsSingle();
            r[k + 1] = Avx512F.UnpackHigh(t[k].AsDouble(), t[k + 2].AsDouble()).AsSingle();
            r[k + 2] = Avx512F.UnpackLow(t[k + 1].AsDouble(), t[k + 3].AsDouble()).AsSingle();
            r[k + 3] = Avx512F.UnpackHigh(t[k + 1].AsDouble(), t[k + 3].AsDouble()).AsSingle();
        }
        for (var k = 0; k < 16; k += 8)
            for (var i = 0; i < 4; i++)
            {
                t[k + i] = Avx512F.Shuffle4x128(r[k + i], r[k + i + 4], 0x88);
                t[k + i + 4] = Avx512F.Shuffle4x128(r[k + i], r[k + i + 4], 0xDD);
            }
        for (var i = 0; i < 8; i++)
        {
            Avx512F.Shuffle4x128(t[i], t[i + 8], 0x88).Store(dst + (long)i * dstStride);
            Avx512F.Shuffle4x128(t[i], t[i + 8], 0xDD).Store(dst + (long)(i + 8) * dstStride);
        }
    }
}
