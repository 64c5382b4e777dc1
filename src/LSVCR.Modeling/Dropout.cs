using LSVCR.Modeling.Cpu;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using static TorchSharp.torch;

namespace LSVCR.Modeling;

/// <summary>
/// Inverted dropout with a keep mask drawn by a counter-based generator in parallel: the mask is a function of one
/// seed, so the fused CPU kernels regenerate it from the seed (forward and backward) instead of storing it, and the
/// plain modules and the kernels apply the same masks.
/// <para>Why not libtorch's: its CPU generator (mt19937) draws serially, one element at a time, and Bernoulli or
/// randint + compare + cast + scale are four more passes; at ≈35 M dropped elements per training step that was
/// the largest single cost (measured: ≈470 ms of a 1.6 s step on 2 cores). A stored float mask would also be written
/// once and read twice per call. No package offers a parallel dropout for TorchSharp tensors, hence this kernel.</para>
/// <para>Generator: SplitMix64 (Steele, Lea, Flood 2014) evaluated at counter i — the output of step i of a
/// SplitMix64 stream seeded per call — gives 64 bits = four 16-bit lanes, one per element; an element is kept iff its
/// lane ≥ round(p·65536), so the drop probability is p quantised to 1/65536 (0.3 → 0.299997), and kept values are
/// scaled by 1/(1−p). The per-call seed comes from the current thread's <see cref="Seeds"/> stream — which a training
/// step seeds from its run's own generator (<see cref="RecCom.Generator"/>), so two runs in one process cannot disturb
/// each other — or, with none, from torch's global generator (<c>torch.manual_seed</c>); either way runs are
/// reproducible and resumable, and the mask does not depend on the number of threads. <see cref="KeepMask"/> gives
/// the same mask as a tensor (tests, the attention reference).</para>
/// Inference (training = false) is the identity.
/// </summary>
internal static class Dropout
{
    /// <summary>x ⊙ <see cref="KeepMask"/> in training (any device and dtype: the mask is drawn on the CPU and moved
    /// to x), the identity otherwise. The fused CPU kernels apply the same mask inside their nodes.</summary>
    public static Tensor Apply(Tensor x, double p, bool training)
    {
        if (!training || p <= 0) return x.alias();
        if (p >= 1) return zeros_like(x);
        using var mask = KeepMask(x.shape, p);
        return x.mul(mask.to(x.dtype, x.device));
    }

    /// <summary>Float32 tensor of <paramref name="shape"/> holding 1/(1−p) where an element is kept and 0 where it is
    /// dropped: the mask <see cref="Apply"/> would use after the same <c>manual_seed</c>.</summary>
    public static Tensor KeepMask(long[] shape, double p)
    {
        var mask = empty(shape, dtype: ScalarType.Float32);
        Run(mask, null, new Spec(NextSeed(), p));
        return mask;
    }

    internal static ushort Threshold(double p) => (ushort)Math.Clamp(Math.Round(p * 65536), 0, 65535);

    /// <summary>The multiplier of a kept element, 1/(1−p) (1 without dropout).</summary>
    internal static float KeepScale(double p) => p > 0 ? (float)(1.0 / (1.0 - p)) : 1f;

    /// <summary>One 64-bit seed: from this thread's <see cref="Seeds"/> stream when one is in use, else from
    /// <paramref name="generator"/> (null: torch's global generator; two draws of 32 bits: randint's bound is exclusive).</summary>
    internal static ulong NextSeed(Generator? generator = null)
    {
        if (_seeds is not null) return _seeds.Next();
        using var draw = randint(0, 1L << 32, [2], dtype: ScalarType.Int64, generator: generator);
        var words = draw.data<long>();
        return ((ulong)words[0] << 32) | (ulong)words[1];
    }

    [ThreadStatic] private static Seeds? _seeds;

    /// <summary>A private stream of per-call seeds (SplitMix64 from one starting seed). Data-parallel shards run
    /// concurrently, so their draws from one generator would interleave in a different order each run; each shard
    /// takes one seed from its run's generator up front and draws its calls' seeds from its own stream instead (an
    /// unsharded training forward does the same with one stream).</summary>
    internal sealed class Seeds(ulong start)
    {
        private ulong _calls;

        public ulong Next() => Mix(start + ++_calls * Golden);

        /// <summary>Makes this the current thread's seed source until the result is disposed.</summary>
        public IDisposable Use()
        {
            var previous = _seeds;
            _seeds = this;
            return new Restore(previous);
        }

        private sealed class Restore(Seeds? previous) : IDisposable
        {
            public void Dispose() => _seeds = previous;
        }
    }

    private sealed record Spec(ulong Seed, double P);

    private const int ChunkWords = 1 << 14; // 64 Ki elements per work item: large enough to amortise scheduling

    /// <summary>dst = src ⊙ keep (src null: dst = keep) over the whole tensor, in parallel chunks of whole words.</summary>
    private static unsafe void Run(Tensor dst, Tensor? src, Spec spec)
    {
        var n = dst.numel();
        var (threshold, scale) = (Threshold(spec.P), KeepScale(spec.P));
        var d = (nint)CpuKernels.Ptr(dst);
        var s = src is null ? 0 : (nint)CpuKernels.Ptr(src);
        var words = (n + 3) / 4;
        var chunks = (int)((words + ChunkWords - 1) / ChunkWords);
        void Chunk(int c)
        {
            var first = (long)c * ChunkWords;
            var count = Math.Min(n, (first + ChunkWords) * 4) - first * 4;
            WriteKeep(spec.Seed, first, count, threshold, scale, (float*)d + first * 4, s == 0 ? null : (float*)s + first * 4);
        }
        CpuKernels.ForEach(chunks, 0, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (c, _) => Chunk(c));
    }

    /// <summary>Writes the multipliers (0 or <paramref name="scale"/>) of the <paramref name="count"/> elements
    /// starting at flat index 4·<paramref name="firstWord"/> to <paramref name="dst"/> — times <paramref name="src"/>
    /// when given: 16 elements (four SplitMix64 outputs) per vector step, then a scalar tail. The one generator behind
    /// <see cref="Apply"/>, <see cref="KeepMask"/> and <see cref="FusedAttention"/>'s regenerated masks.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static unsafe void WriteKeep(ulong seed, long firstWord, long count, ushort threshold, float scale, float* dst, float* src = null)
    {
        var step = Vector256.Create(Golden);
        var z0 = Vector256.Create(seed) + (Vector256.Create((ulong)firstWord + 1) + Vector256.Create(0UL, 1, 2, 3)) * step;
        var four = Vector256.Create(4UL) * step;
        var thr = Vector256.Create(threshold);
        var keepScale = Vector256.Create(scale);
        long i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            // The same words eight at a time (the 64-bit multiplies are the cost: one 512-bit multiply per two 256-bit).
            var w0 = Vector512.Create(seed) + (Vector512.Create((ulong)firstWord + 1) + Vector512.Create(0UL, 1, 2, 3, 4, 5, 6, 7)) * Vector512.Create(Golden);
            var eight = Vector512.Create(8UL) * Vector512.Create(Golden);
            var (thr512, scale512) = (Vector512.Create(threshold), Vector512.Create(scale));
            for (; i + 32 <= count; i += 32, w0 += eight)
            {
                var z = w0;
                z = (z ^ Vector512.ShiftRightLogical(z, 30)) * Vector512.Create(Mix1);
                z = (z ^ Vector512.ShiftRightLogical(z, 27)) * Vector512.Create(Mix2);
                z ^= Vector512.ShiftRightLogical(z, 31);
                var (lo, hi) = Vector512.Widen(Vector512.GreaterThanOrEqual(z.AsUInt16(), thr512).AsInt16());
                var m0 = Vector512.ConditionalSelect(lo.AsSingle(), scale512, Vector512<float>.Zero);
                var m1 = Vector512.ConditionalSelect(hi.AsSingle(), scale512, Vector512<float>.Zero);
                if (src != null)
                {
                    m0 *= Vector512.Load(src + i);
                    m1 *= Vector512.Load(src + i + 16);
                }
                m0.Store(dst + i);
                m1.Store(dst + i + 16);
            }
            z0 += Vector256.Create((ulong)(i / 4)) * step;
        }
        for (; i + 16 <= count; i += 16, z0 += four)
        {
            var z = z0;
            z = (z ^ Vector256.ShiftRightLogical(z, 30)) * Vector256.Create(Mix1);
            z = (z ^ Vector256.ShiftRightLogical(z, 27)) * Vector256.Create(Mix2);
            z ^= Vector256.ShiftRightLogical(z, 31);
            var (lo, hi) = Vector256.Widen(Vector256.GreaterThanOrEqual(z.AsUInt16(), thr).AsInt16());
            var m0 = Vector256.ConditionalSelect(lo.AsSingle(), keepScale, Vector256<float>.Zero);
            var m1 = Vector256.ConditionalSelect(hi.AsSingle(), keepScale, Vector256<float>.Zero);
            if (src != null)
            {
                m0 *= Vector256.Load(src + i);
                m1 *= Vector256.Load(src + i + 8);
            }
            m0.Store(dst + i);
            m1.Store(dst + i + 8);
        }
        for (; i < count; i += 4)
        {
            var z = Mix(seed + (ulong)(firstWord + i / 4 + 1) * Golden);
            for (var j = 0; j < 4 && i + j < count; j++)
            {
                var m = (ushort)(z >> (16 * j)) >= threshold ? scale : 0f;
                dst[i + j] = src == null ? m : m * src[i + j];
            }
        }
    }

    internal const ulong Golden = 0x9E3779B97F4A7C15UL;
    private const ulong Mix1 = 0xBF58476D1CE4E5B9UL, Mix2 = 0x94D049BB133111EBUL;

    /// <summary>SplitMix64's output function (Stafford's Mix13 variant); <see cref="WriteKeep"/> has it vectorised.</summary>
    internal static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * Mix1;
        z = (z ^ (z >> 27)) * Mix2;
        return z ^ (z >> 31);
    }
}
