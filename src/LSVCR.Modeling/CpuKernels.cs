using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using static TorchSharp.torch;

namespace LSVCR.Modeling;

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

    /// <summary>n rounded up to whole vectors.</summary>
    public static int Pad(int n) => (n + 7) & ~7;

    /// <summary>Runs <paramref name="body"/>(item, scratch) for every item, on as many threads as libtorch uses
    /// (<c>get_num_threads</c>), each thread with its own pinned scratch of <paramref name="scratchFloats"/>. Items
    /// go out in runs of consecutive items (about eight runs per thread) so scheduling stays off the profile.</summary>
    public static void ForEach(int items, int scratchFloats, Action<int, nint> body)
    {
        var threads = Math.Max(1, get_num_threads());
        if (threads == 1 || items == 1)
        {
            var scratch = new float[scratchFloats];
            fixed (float* s = scratch) for (var i = 0; i < items; i++) body(i, (nint)s);
            return;
        }
        var run = Math.Max(1, items / (8 * threads));
        var runs = (items + run - 1) / run;
        Parallel.For(0, runs, new ParallelOptions { MaxDegreeOfParallelism = threads },
            () => GC.AllocateUninitializedArray<float>(scratchFloats, pinned: true),
            (r, _, scratch) =>
            {
                fixed (float* s = scratch)
                    for (var i = r * run; i < Math.Min(items, (r + 1) * run); i++) body(i, (nint)s);
                return scratch;
            },
            _ => { });
    }

    /// <summary>dst[0..n) = x ⊙ y.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Multiply(float* x, float* y, float* dst, int n)
    {
        var j = 0;
        for (; j + 8 <= n; j += 8) (Vector256.Load(x + j) * Vector256.Load(y + j)).Store(dst + j);
        for (; j < n; j++) dst[j] = x[j] * y[j];
    }

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

    /// <summary>dst[t, j] = src[j·stride + t] for j &lt; rows, t &lt; cols; columns rows..pad of dst are zero.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Transpose(float* src, int stride, int rows, int cols, float* dst, int pad)
    {
        for (var t = 0; t < cols; t++)
        {
            var d = dst + t * pad;
            for (var j = 0; j < rows; j++) d[j] = src[(long)j * stride + t];
            for (var j = rows; j < pad; j++) d[j] = 0f;
        }
    }
}
